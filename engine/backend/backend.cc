#include "engine/backend/backend.h"

namespace mla {

Tensor Tensor::Rows(int64_t first, int64_t count) const {
  Tensor t = *this;
  t.data = static_cast<char*>(data) + first * stride * static_cast<int64_t>(DTypeSize(dtype));
  t.rows = count;
  return t;
}

Tensor Tensor::Cols(int64_t first, int64_t count) const {
  Tensor t = *this;
  t.data = static_cast<char*>(data) + first * static_cast<int64_t>(DTypeSize(dtype));
  t.cols = count;
  return t;
}

}  // namespace mla
