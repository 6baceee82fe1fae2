#include "mtedge/npy.h"

#include <cstring>
#include <fstream>

#include "mtedge/errors.h"

namespace mtedge {

NpyArray read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw FileMissingError("cannot open '" + path + "'; check the path");
  auto bad = [&](const std::string& why) {
    return BundleError("'" + path + "' is not a float32 C-order .npy file (" + why +
                       "); write it with numpy.save(arr.astype('<f4'))");
  };
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw bad("bad magic");
  std::uint32_t header_len = 0;
  unsigned char len_bytes[4] = {0, 0, 0, 0};
  const int n = magic[6] == 1 ? 2 : 4;  // version 1.0: u16 length, 2.0/3.0: u32
  if (!f.read(reinterpret_cast<char*>(len_bytes), n)) throw bad("truncated header");
  for (int i = 0; i < n; ++i) header_len |= std::uint32_t(len_bytes[i]) << (8 * i);
  std::string header(header_len, '\0');
  if (!f.read(header.data(), header_len)) throw bad("truncated header");
  if (header.find("'descr': '<f4'") == std::string::npos) throw bad("dtype is not '<f4'");
  if (header.find("'fortran_order': False") == std::string::npos) throw bad("Fortran order");
  const auto lp = header.find('(', header.find("'shape'"));
  const auto rp = header.find(')', lp);
  if (lp == std::string::npos || rp == std::string::npos) throw bad("no shape");
  NpyArray a;
  const std::string dims = header.substr(lp + 1, rp - lp - 1);
  for (std::size_t pos = 0; pos < dims.size();) {
    const std::size_t end = std::min(dims.find(',', pos), dims.size());
    const std::string d = dims.substr(pos, end - pos);
    if (d.find_first_of("0123456789") != std::string::npos) a.shape.push_back(std::stoll(d));
    pos = end + 1;
  }
  a.data.resize(static_cast<std::size_t>(numel(a.shape)));
  if (!f.read(reinterpret_cast<char*>(a.data.data()),
              static_cast<std::streamsize>(a.data.size() * sizeof(float))))
    throw bad("truncated data");
  return a;
}

}  // namespace mtedge
