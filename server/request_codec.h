// Request and response bytes for the service's raw (ByteBuffer) methods.
//
// With typed callback methods, gRPC deserializes the request itself and, when that fails,
// answers UNIMPLEMENTED with an empty message: the client cannot tell that its request
// was malformed, let alone where. The service therefore takes the bytes and parses them
// here, answering INVALID_ARGUMENT that names the field: a proto3 `string` field holding
// invalid UTF-8 (protobuf refuses those; send text as UTF-8, or bytes as token ids), or a
// body that is not the request message at all.
#ifndef MLA_SERVER_REQUEST_CODEC_H_
#define MLA_SERVER_REQUEST_CODEC_H_

#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace mla {

// Parses `buffer` into `message`; INVALID_ARGUMENT naming the field or the message type.
grpc::Status ParseRequest(const grpc::ByteBuffer& buffer, google::protobuf::Message* message);
// Same, from bytes.
grpc::Status ParseRequestBytes(absl::string_view bytes, google::protobuf::Message* message);

// Serializes a response; INTERNAL if protobuf cannot.
grpc::Status SerializeResponse(const google::protobuf::Message& message,
                               grpc::ByteBuffer* buffer);

// The path of the first `string` field in `bytes` (wire format of a `descriptor` message)
// whose value is not UTF-8, e.g. "messages.messages[1].content"; empty when there is none
// or the bytes are not wire format (which parsing then reports).
std::string FindInvalidUtf8Field(absl::string_view bytes,
                                 const google::protobuf::Descriptor& descriptor);

}  // namespace mla

#endif  // MLA_SERVER_REQUEST_CODEC_H_
