// Pipeline files: the limits check, toml++, the readers of every key and dag::Validate.
#include "config/pipeline_loader.h"
#include "fuzz/check.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, size_t size) {
  auto result = kiln::config::ParsePipeline(kiln::fuzz::Text(data, size), "p.toml");
  // A pipeline comes with no diagnostics, diagnostics with no pipeline.
  kiln::fuzz::Check(static_cast<bool>(result.pipeline) == result.diagnostics.empty(),
                    "a pipeline exactly when there is no diagnostic");
  for (const auto& d : result.diagnostics) {
    kiln::fuzz::Check(!d.message.empty(), "every diagnostic says something");
    kiln::fuzz::Check(d.file == "p.toml", "every diagnostic names the file");
  }
  if (result.pipeline) {
    kiln::fuzz::Check(!result.pipeline->spec.tasks.empty(), "a pipeline has tasks");
  }
  return 0;
}
