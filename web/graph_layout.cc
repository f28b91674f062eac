#include "web/graph_layout.h"

#include <graphviz/gvc.h>

#include <cstdio>
#include <list>
#include <map>
#include <mutex>

namespace kiln::web {

// Graphviz's dot layout, linked in rather than loaded from its plugin folder at run time.
extern "C" gvplugin_library_t gvplugin_dot_layout_LTX_library;

namespace {

constexpr size_t kCachedLayouts = 64;
// Box sizes in points, for the page's 12 px monospace labels.
constexpr double kCharWidth = 7.4;
constexpr double kBoxPadding = 34;  // state icon and margins
constexpr double kBoxHeight = 22;

std::mutex graphviz_mu;  // Graphviz keeps global state: one layout at a time

struct Cache {
  std::mutex mu;
  std::map<std::string, std::shared_ptr<const GraphLayout>> by_version;
  std::list<std::string> oldest_first;
};

Cache& TheCache() {
  static Cache cache;
  return cache;
}

std::shared_ptr<const GraphLayout> Cached(const std::string& version) {
  Cache& c = TheCache();
  std::lock_guard lock(c.mu);
  auto it = c.by_version.find(version);
  return it == c.by_version.end() ? nullptr : it->second;
}

void Keep(const std::shared_ptr<const GraphLayout>& layout) {
  Cache& c = TheCache();
  std::lock_guard lock(c.mu);
  if (!c.by_version.emplace(layout->version, layout).second) return;
  c.oldest_first.push_back(layout->version);
  while (c.oldest_first.size() > kCachedLayouts) {
    c.by_version.erase(c.oldest_first.front());
    c.oldest_first.pop_front();
  }
}

GVC_t* Context() {
  static lt_symlist_t builtins[] = {
      {"gvplugin_dot_layout_LTX_library", &gvplugin_dot_layout_LTX_library},
      {nullptr, nullptr},
  };
  static GVC_t* gvc = gvContextPlugins(builtins, 0);
  return gvc;
}

void Set(void* object, const char* name, const std::string& value) {
  agsafeset(object, const_cast<char*>(name), const_cast<char*>(value.c_str()),
            const_cast<char*>(""));
}

std::string Number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// Graphviz's y axis points up; the page's points down.
std::string Point(pointf p, double top) { return Number(p.x) + "," + Number(top - p.y); }

std::string EdgePath(Agedge_t* e, double top) {
  splines* spl = ED_spl(e);
  if (spl == nullptr || spl->size == 0) return "";
  const bezier& bz = spl->list[0];
  if (bz.size == 0) return "";
  std::string d = "M" + Point(bz.list[0], top);
  for (int i = 1; i + 2 < bz.size; i += 3) {
    d += " C" + Point(bz.list[i], top) + " " + Point(bz.list[i + 1], top) + " " +
         Point(bz.list[i + 2], top);
  }
  if (bz.eflag) d += " L" + Point(bz.ep, top);
  return d;
}

Result<std::shared_ptr<const GraphLayout>> MakeLayout(const dag::Pipeline& pipeline) {
  const auto& tasks = pipeline.spec.tasks;
  GVC_t* gvc = Context();
  if (gvc == nullptr) return Status::Error("graph layout: Graphviz did not start");
  Agraph_t* g = agopen(const_cast<char*>("kiln"), Agdirected, nullptr);
  Set(g, "rankdir", "LR");
  Set(g, "nodesep", "0.12");
  Set(g, "ranksep", "0.45");
  Set(g, "splines", "spline");
  std::vector<Agnode_t*> nodes;
  nodes.reserve(tasks.size());
  for (const auto& t : tasks) {
    Agnode_t* n = agnode(g, const_cast<char*>(t.id.c_str()), 1);
    Set(n, "shape", "box");
    Set(n, "fixedsize", "true");
    Set(n, "label", "");
    Set(n, "width", Number((kBoxPadding + kCharWidth * t.id.size()) / 72.0 + 0.05));
    Set(n, "height", Number(kBoxHeight / 72.0 + 0.05));
    nodes.push_back(n);
  }
  for (size_t i = 0; i < tasks.size(); ++i) {
    for (const auto& up : tasks[i].needs) {
      Agnode_t* from = agnode(g, const_cast<char*>(up.c_str()), 0);
      if (from != nullptr) agedge(g, from, nodes[i], nullptr, 1);
    }
  }
  if (gvLayout(gvc, g, "dot") != 0) {
    agclose(g);
    return Status::Error("graph layout: dot could not lay out pipeline '" + pipeline.spec.name +
                         "'");
  }
  auto layout = std::make_shared<GraphLayout>();
  layout->version = pipeline.spec.content_hash;
  const boxf bb = GD_bb(g);
  const double top = bb.UR.y;
  layout->width = bb.UR.x - bb.LL.x;
  layout->height = bb.UR.y - bb.LL.y;
  for (size_t i = 0; i < tasks.size(); ++i) {
    Agnode_t* n = nodes[i];
    const double w = ND_width(n) * 72.0, h = ND_height(n) * 72.0;
    const pointf c = ND_coord(n);
    layout->nodes.push_back({tasks[i].id, c.x - w / 2, top - c.y - h / 2, w, h});
    for (Agedge_t* e = agfstout(g, n); e != nullptr; e = agnxtout(g, e)) {
      layout->edges.push_back({tasks[i].id, agnameof(aghead(e)), EdgePath(e, top)});
    }
  }
  gvFreeLayout(gvc, g);
  agclose(g);
  return std::shared_ptr<const GraphLayout>(std::move(layout));
}

}  // namespace

Result<std::shared_ptr<const GraphLayout>> LayoutOf(const dag::Pipeline& pipeline) {
  if (auto hit = Cached(pipeline.spec.content_hash)) return hit;
  std::lock_guard lock(graphviz_mu);
  // Another request may have made it while this one waited.
  if (auto hit = Cached(pipeline.spec.content_hash)) return hit;
  auto made = MakeLayout(pipeline);
  if (made.ok()) Keep(*made);
  return made;
}

}  // namespace kiln::web
