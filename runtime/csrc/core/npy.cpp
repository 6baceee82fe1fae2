#include "mtedge/npy.h"

#include <cctype>
#include <cstring>
#include <map>

#include "mtedge/errors.h"
#include "mtedge/manifest.h"

namespace mtedge {
namespace {

// A tiny parser for the one dict literal numpy writes; anything else is rejected.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& name) : s_(text), name_(name) {}

  // Returns key -> raw value ("'<f4'", "False", "(1, 2)" parsed into shape_).
  void parse(std::string& descr, bool& fortran, Shape& shape) {
    std::map<std::string, int> seen;
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') break;
      const std::string key = quoted();
      if (seen[key]++) throw bad("key '" + key + "' appears twice");
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr") {
        descr = quoted();
      } else if (key == "fortran_order") {
        fortran = boolean();
      } else if (key == "shape") {
        shape = tuple();
      } else {
        throw bad("unexpected key '" + key + "'");
      }
      skip_ws();
      if (peek() == ',') ++pos_;
    }
    expect('}');
    for (; pos_ < s_.size(); ++pos_)
      if (s_[pos_] != ' ' && s_[pos_] != '\n') throw bad("text after the header dict");
    for (const char* k : {"descr", "fortran_order", "shape"})
      if (!seen.count(k)) throw bad(std::string("no '") + k + "' in the header");
  }

  BundleError bad(const std::string& why) const {
    return BundleError("'" + name_ + "' is not a float32 C-order .npy file (" + why +
                       "); write it with numpy.save(path, arr.astype('<f4'))");
  }

 private:
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < s_.size() && s_[pos_] == ' ') ++pos_;
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c) throw bad(std::string("expected '") + c + "' at header offset " + std::to_string(pos_));
    ++pos_;
  }
  std::string quoted() {
    const char q = peek();
    if (q != '\'' && q != '"') throw bad("expected a quoted key or string at header offset " + std::to_string(pos_));
    const std::size_t end = s_.find(q, pos_ + 1);
    if (end == std::string::npos || end - pos_ > 64) throw bad("unterminated string in the header");
    std::string out = s_.substr(pos_ + 1, end - pos_ - 1);
    pos_ = end + 1;
    return out;
  }
  bool boolean() {
    if (s_.compare(pos_, 5, "False") == 0) return pos_ += 5, false;
    if (s_.compare(pos_, 4, "True") == 0) return pos_ += 4, true;
    throw bad("fortran_order is neither True nor False");
  }
  Shape tuple() {
    expect('(');
    Shape out;
    while (true) {
      skip_ws();
      if (peek() == ')') break;
      if (!std::isdigit(static_cast<unsigned char>(peek()))) throw bad("shape holds a non-integer");
      std::int64_t v = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        v = v * 10 + (s_[pos_++] - '0');
        if (v > kMaxElements) throw bad("a dimension exceeds " + std::to_string(kMaxElements));
      }
      out.push_back(v);
      if (out.size() > kMaxRank) throw bad("rank > " + std::to_string(kMaxRank));
      skip_ws();
      if (peek() == ',') ++pos_;
      else if (peek() != ')') throw bad("shape is not a tuple of integers");
    }
    ++pos_;
    return out;
  }

  const std::string& s_;
  const std::string& name_;
  std::size_t pos_ = 0;
};

std::string read_file(const std::string& path, std::uint64_t max_bytes) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw FileMissingError("cannot open '" + path + "'; check the path");
  std::string out;
  char buf[1 << 16];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    if (out.size() + n > max_bytes) {
      std::fclose(f);
      throw BundleError("'" + path + "' is larger than " + std::to_string(max_bytes) +
                        " bytes; it is not the file the bundle describes: re-export the bundle");
    }
    out.append(buf, n);
  }
  const bool err = std::ferror(f);
  std::fclose(f);
  if (err) throw FileMissingError("cannot read '" + path + "'; check the file and its permissions");
  return out;
}

}  // namespace

NpyArray parse_npy(const std::string& b, const std::string& name) {
  HeaderParser p({}, name);
  if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0) throw p.bad("bad magic");
  const unsigned major = static_cast<unsigned char>(b[6]), minor = static_cast<unsigned char>(b[7]);
  if (major < 1 || major > 3 || minor != 0)
    throw p.bad("unknown format version " + std::to_string(major) + "." + std::to_string(minor));
  const std::size_t len_bytes = major == 1 ? 2 : 4;  // 1.0: u16 header length, 2.0/3.0: u32
  if (b.size() < 8 + len_bytes) throw p.bad("truncated header");
  std::uint64_t header_len = 0;
  for (std::size_t i = 0; i < len_bytes; ++i)
    header_len |= std::uint64_t(static_cast<unsigned char>(b[8 + i])) << (8 * i);
  if (header_len > kMaxNpyHeader)
    throw p.bad("header length " + std::to_string(header_len) + " > " + std::to_string(kMaxNpyHeader));
  const std::size_t data_at = 8 + len_bytes + header_len;
  if (data_at > b.size()) throw p.bad("truncated header");
  const std::string header = b.substr(8 + len_bytes, header_len);
  std::string descr;
  bool fortran = true;
  NpyArray a;
  HeaderParser(header, name).parse(descr, fortran, a.shape);
  if (descr != "<f4") throw p.bad("dtype is '" + descr + "', not '<f4'");
  if (fortran) throw p.bad("Fortran order");
  const std::string why = shape_problem(a.shape);
  if (!why.empty()) throw p.bad("shape " + shape_str(a.shape) + ": " + why);
  const std::uint64_t want = std::uint64_t(numel(a.shape)) * sizeof(float);
  if (b.size() - data_at != want)
    throw p.bad("shape " + shape_str(a.shape) + " needs " + std::to_string(want) +
                " data bytes, the file has " + std::to_string(b.size() - data_at));
  a.data.resize(static_cast<std::size_t>(numel(a.shape)));
  std::memcpy(a.data.data(), b.data() + data_at, want);
  return a;
}

NpyArray read_npy(const std::string& path) {
  return parse_npy(read_file(path, 8 + 4 + kMaxNpyHeader + std::uint64_t(kMaxElements) * 4), path);
}

NpyArray read_bundle_npy(const Manifest& m, const FileRef& ref, const Shape& expect) {
  const std::string bytes = read_verified(m, ref);
  NpyArray a = parse_npy(bytes, ref.file);
  if (!expect.empty() && a.shape != expect)
    throw BundleError("bundle file '" + ref.file + "' has shape " + shape_str(a.shape) +
                      ", the manifest implies " + shape_str(expect) + "; re-export the bundle");
  return a;
}

Shape golden_shape(int samples, const Shape& per_call) {
  Shape s{samples};
  s.insert(s.end(), per_call.begin() + (per_call.empty() ? 0 : 1), per_call.end());
  return s;
}

}  // namespace mtedge
