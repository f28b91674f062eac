#include "common/secret_mask.h"

#include <catch2/catch.hpp>

namespace kiln {
namespace {

// Feeds `text` in chunks of `size` bytes and returns everything written.
std::string FeedInChunks(SecretMasker& m, std::string_view text, size_t size) {
  std::string out;
  for (size_t i = 0; i < text.size(); i += size) out += m.Feed(text.substr(i, size));
  return out + m.Flush();
}

TEST_CASE("SecretMasker replaces every occurrence", "[secret_mask]") {
  SecretMasker m({"hunter2", "s3cr3t"});
  CHECK(m.MaskAll("pw=hunter2 token=s3cr3t again hunter2") == "pw=*** token=*** again ***");
  CHECK(m.MaskAll("nothing here") == "nothing here");
  CHECK(m.MaskAll("hunter") == "hunter");
}

TEST_CASE("SecretMasker finds a secret split across writes, at every split", "[secret_mask]") {
  const std::string text = "start hunter2 middle hunter2hunter2 end hunt";
  const std::string want = "start *** middle *** end hunt";  // adjacent occurrences: one mark
  for (size_t size = 1; size <= text.size(); ++size) {
    SecretMasker m({"hunter2"});
    INFO("chunk size " << size);
    CHECK(FeedInChunks(m, text, size) == want);
  }
}

TEST_CASE("SecretMasker prefers the longest value at a position", "[secret_mask]") {
  const std::string text = "a=abc b=abcdef c=abcd";
  for (size_t size = 1; size <= text.size(); ++size) {
    SecretMasker m({"abc", "abcdef"});
    INFO("chunk size " << size);
    CHECK(FeedInChunks(m, text, size) == "a=*** b=*** c=***d");
  }
}

TEST_CASE("SecretMasker holds back only what may begin a secret", "[secret_mask]") {
  SecretMasker m({"hunter2"});
  CHECK(m.Feed("line one\nhun") == "line one\n");
  CHECK(m.Feed("gry\n") == "hungry\n");
  CHECK(m.Feed("x hunt") == "x ");
  CHECK(m.Flush() == "hunt");
  CHECK(m.Flush().empty());
}

TEST_CASE("SecretMasker without values passes bytes through", "[secret_mask]") {
  SecretMasker m({"", ""});
  CHECK(m.empty());
  CHECK(m.Feed(std::string_view("a\0b", 3)) == std::string("a\0b", 3));
  CHECK(m.Flush().empty());
}

}  // namespace
}  // namespace kiln

namespace kiln {
namespace {

TEST_CASE("SecretMasker masks overlapping and nested values, at every split", "[secret_mask]") {
  struct Case {
    std::vector<std::string> values;
    std::string text;
    std::string want;
  };
  const std::vector<Case> cases = {
      {{"abcdef", "cd"}, "xabcdefy", "x***y"},
      {{"abcdef", "cd"}, "xabcdy", "xab***y"},
      {{"ab", "bcd"}, "abcd!", "***!"},
      {{"bc", "cdefg"}, "abcdx", "a***dx"},
      {{"bc", "cdefg"}, "abcdefg.", "a***."},
      {{"aa"}, "aaaaa", "***"},
      {{"a"}, std::string(1000, 'a') + "b", "***b"},
  };
  for (const Case& c : cases) {
    for (size_t size = 1; size <= c.text.size(); ++size) {
      SecretMasker m(c.values);
      INFO(c.text << " in chunks of " << size);
      CHECK(FeedInChunks(m, c.text, size) == c.want);
    }
  }
}

TEST_CASE("SecretMasker drops what it holds where the stream is cut", "[secret_mask]") {
  SecretMasker m({"hunter2"});
  CHECK(m.Feed("log line hunte") == "log line ");
  m.Drop();
  CHECK(m.Flush().empty());
}

}  // namespace
}  // namespace kiln
