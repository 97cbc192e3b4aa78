// A Generate request from its wire bytes to an engine request: the raw parse (invalid
// UTF-8 named by field, garbage refused) and the proto → engine conversion.
#include <cstddef>
#include <cstdint>

#include "google/protobuf/stubs/logging.h"
#include "mla/v1/inference.pb.h"
#include "server/proto_convert.h"
#include "server/request_codec.h"
#include "server/text_support.h"

namespace {

// ParseRequestBytes checks UTF-8 before protobuf does: protobuf complaining (it logs an
// error for invalid UTF-8 in a string field) means a field slipped past that check.
void TrapOnProtobufError(google::protobuf::LogLevel level, const char*, int,
                         const std::string&) {
  if (level >= google::protobuf::LOGLEVEL_ERROR) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const mla::TextSupport* text = [] {
    google::protobuf::SetLogHandler(TrapOnProtobufError);
    return new mla::TextSupport(nullptr);
  }();
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  mla::v1::GenerateRequest request;
  const grpc::Status status = mla::ParseRequestBytes(bytes, &request);
  if (!status.ok()) {
    if (status.error_code() != grpc::StatusCode::INVALID_ARGUMENT) __builtin_trap();
    return 0;
  }
  (void)mla::ToGenerationRequest(request, *text);
  return 0;
}
