#include "server/request_codec.h"

#include <grpcpp/impl/codegen/proto_utils.h>

#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/utf8.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"

namespace mla {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::io::CodedInputStream;
using google::protobuf::internal::WireFormatLite;

// Far deeper than our messages nest (two levels); bounds the recursion on crafted input.
constexpr int kMaxDepth = 16;

// Scans one message's fields in `in` (up to its limit). Returns false when the bytes are
// not wire format; sets `*bad` to the path of the first string field that is not UTF-8.
bool Scan(CodedInputStream& in, const Descriptor& descriptor, const std::string& prefix,
          int depth, std::string* bad) {
  std::map<int, int> occurrences;  // Field number → values seen (indices of repeated ones).
  while (const uint32_t tag = in.ReadTag()) {
    const FieldDescriptor* field = descriptor.FindFieldByNumber(static_cast<int>(tag >> 3));
    if (WireFormatLite::GetTagWireType(tag) != WireFormatLite::WIRETYPE_LENGTH_DELIMITED ||
        field == nullptr || (field->type() != FieldDescriptor::TYPE_STRING &&
                             field->type() != FieldDescriptor::TYPE_MESSAGE)) {
      if (!WireFormatLite::SkipField(&in, tag)) return false;
      continue;
    }
    const int index = occurrences[field->number()]++;
    const std::string path = absl::StrCat(prefix, field->name(),
                                          field->is_repeated() ? absl::StrCat("[", index, "]") : "");
    uint32_t length = 0;
    if (!in.ReadVarint32(&length)) return false;
    if (field->type() == FieldDescriptor::TYPE_STRING) {
      std::string value;
      if (!in.ReadString(&value, static_cast<int>(length))) return false;
      if (!IsValidUtf8(value)) {
        *bad = path;
        return true;
      }
      continue;
    }
    if (depth >= kMaxDepth) return false;
    const CodedInputStream::Limit limit = in.PushLimit(static_cast<int>(length));
    if (!Scan(in, *field->message_type(), path + ".", depth + 1, bad)) return false;
    if (!bad->empty()) return true;
    in.PopLimit(limit);
  }
  return in.ConsumedEntireMessage();
}

// Scans a whole message: false when it is not wire format (`*bad` set on invalid UTF-8).
bool ScanMessage(absl::string_view bytes, const Descriptor& descriptor, std::string* bad) {
  CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                      static_cast<int>(bytes.size()));
  return Scan(in, descriptor, "", 0, bad);
}

}  // namespace

std::string FindInvalidUtf8Field(absl::string_view bytes, const Descriptor& descriptor) {
  std::string bad;
  ScanMessage(bytes, descriptor, &bad);
  return bad;
}

grpc::Status ParseRequestBytes(absl::string_view bytes, google::protobuf::Message* message) {
  // Checked before parsing: protobuf would refuse the message without saying where (and
  // log an error line for every such request, even a truncated one).
  std::string field;
  const bool wire_format = ScanMessage(bytes, *message->GetDescriptor(), &field);
  if (!field.empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat(field, ": is not valid UTF-8 (string fields must be "
                                            "UTF-8; send other bytes as token ids)"));
  }
  if (!wire_format || !message->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("the request is not a valid ",
                                     message->GetDescriptor()->full_name(),
                                     " message (protobuf wire format)"));
  }
  return grpc::Status::OK;
}

grpc::Status ParseRequest(const grpc::ByteBuffer& buffer, google::protobuf::Message* message) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the request body cannot be read");
  }
  std::string bytes;
  bytes.reserve(buffer.Length());
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return ParseRequestBytes(bytes, message);
}

grpc::Status SerializeResponse(const google::protobuf::Message& message,
                               grpc::ByteBuffer* buffer) {
  buffer->Clear();  // The serializer writes into an empty buffer only.
  bool own_buffer = false;
  return grpc::SerializationTraits<google::protobuf::Message>::Serialize(message, buffer,
                                                                         &own_buffer);
}

}  // namespace mla
