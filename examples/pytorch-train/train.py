"""train: fit a small multilayer perceptron with PyTorch and measure it on the validation split.

Runs on the GPU when PyTorch sees one and on the CPU otherwise (one thread, seeded: the same
data and params give the same model). Writes model.pt (the state dict) and metrics.json
({"val_accuracy", "val_loss", "train_loss", "epochs"}) to the run folder.
"""

import argparse
import json
import os

import numpy as np
import torch
from torch import nn


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.epochs < 1 or args.hidden < 1 or not args.lr > 0:
        raise SystemExit("train: --epochs and --hidden must be >= 1 and --lr > 0")

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = np.load(args.data)
    x_train = torch.from_numpy(data["x_train"]).to(device)
    y_train = torch.from_numpy(data["y_train"]).to(device)
    x_val = torch.from_numpy(data["x_val"]).to(device)
    y_val = torch.from_numpy(data["y_val"]).to(device)

    model = nn.Sequential(nn.Linear(2, args.hidden), nn.Tanh(),
                          nn.Linear(args.hidden, args.hidden), nn.Tanh(),
                          nn.Linear(args.hidden, 2)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    print(f"train: {sum(p.numel() for p in model.parameters())} parameters on {device}, "
          f"{args.epochs} epochs, lr {args.lr}")
    for epoch in range(1, args.epochs + 1):
        optimizer.zero_grad()
        loss = loss_fn(model(x_train), y_train)
        loss.backward()
        optimizer.step()
        if epoch % max(1, args.epochs // 5) == 0 or epoch == args.epochs:
            print(f"train: epoch {epoch}: loss {loss.item():.4f}")

    model.eval()
    with torch.no_grad():
        logits = model(x_val)
        val_loss = loss_fn(logits, y_val).item()
        val_accuracy = (logits.argmax(dim=1) == y_val).float().mean().item()
    metrics = {"val_accuracy": round(val_accuracy, 6), "val_loss": round(val_loss, 6),
               "train_loss": round(loss.item(), 6), "epochs": args.epochs}
    torch.save(model.state_dict(), os.path.join(args.run_dir, "model.pt"))
    with open(os.path.join(args.run_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f)
    print(f"train: val_accuracy {val_accuracy:.4f}, val_loss {val_loss:.4f}")


if __name__ == "__main__":
    main()
