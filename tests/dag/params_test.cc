#include "dag/params.h"

#include <catch2/catch.hpp>

using kiln::dag::ParamValue;

namespace {

kiln::dag::PipelineSpec Spec() {
  kiln::dag::PipelineSpec spec;
  spec.name = "p";
  spec.params = {{"dataset", ParamValue(std::string("a.csv")), {}},
                 {"epochs", ParamValue(int64_t{10}), {}},
                 {"min_auc", ParamValue(0.85), {}},
                 {"dry_run", ParamValue(false), {}}};
  return spec;
}

}  // namespace

TEST_CASE("params resolve to defaults overridden by typed values") {
  auto r = kiln::dag::ResolveParams(Spec(), {{"epochs", "12"}, {"dry_run", "true"}});
  REQUIRE(r.ok());
  CHECK(std::get<int64_t>(r->at(1).second) == 12);
  CHECK(std::get<bool>(r->at(3).second) == true);
  CHECK(std::get<std::string>(r->at(0).second) == "a.csv");
  CHECK(std::get<double>(r->at(2).second) == 0.85);
}

TEST_CASE("undeclared and ill-typed params are rejected with what is accepted") {
  auto r = kiln::dag::ResolveParams(Spec(), {{"epoch", "3"}});
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == kiln::ErrorCode::kInvalidArgument);
  CHECK(r.message() == "undeclared param 'epoch' (declared: dataset, epochs, min_auc, dry_run)");
  CHECK(kiln::dag::ResolveParams(Spec(), {{"epochs", "ten"}}).message() ==
        "param 'epochs' expects an integer, got 'ten'");
  CHECK(kiln::dag::ResolveParams(Spec(), {{"dry_run", "yes"}}).message() ==
        "param 'dry_run' expects a boolean, got 'yes'");
  CHECK(kiln::dag::ResolveParams(Spec(), {{"epochs", "1"}, {"epochs", "2"}}).message() ==
        "param 'epochs' is given twice");
  auto nul = kiln::dag::ResolveParams(Spec(), {{"dataset", std::string("a\0b", 3)}});
  CHECK(nul.status().code() == kiln::ErrorCode::kInvalidArgument);
  CHECK(nul.message() ==
        "param 'dataset' holds a NUL character (\\u0000), which no command, argument or stored "
        "text can hold");
}

TEST_CASE("assignments split at the first equals sign") {
  auto r = kiln::dag::SplitAssignment("q=a=b");
  REQUIRE(r.ok());
  CHECK(r->first == "q");
  CHECK(r->second == "a=b");
  CHECK(kiln::dag::SplitAssignment("novalue").message() ==
        "'novalue' is not of the form name=value");
}
