// Minimal leveled logging to stderr. One line per call, written with a single fwrite so
// that lines from different threads do not interleave.
#ifndef MLA_ENGINE_COMMON_LOG_H_
#define MLA_ENGINE_COMMON_LOG_H_

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace mla {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Parses "debug", "info", "warning" or "error"; false when unknown.
bool ParseLogLevel(absl::string_view text, LogLevel* level);
// Writes one line. Control characters in `message` are escaped (a newline becomes the two
// characters \n), so that no message, whatever text it quotes, can start a second line.
void LogLine(LogLevel level, absl::string_view message);

// `value` in double quotes with quotes, backslashes, control characters and non-ASCII
// bytes escaped (\", \\, \n, \xNN): the form for client-chosen strings (request ids,
// stop strings) in log lines, so that a reader can tell where the value ends.
std::string LogQuoted(absl::string_view value);

template <typename... Args>
void Log(LogLevel level, const Args&... args) {
  if (level < GetLogLevel()) return;
  LogLine(level, absl::StrCat(args...));
}
template <typename... Args>
void LogInfo(const Args&... args) { Log(LogLevel::kInfo, args...); }
template <typename... Args>
void LogWarning(const Args&... args) { Log(LogLevel::kWarning, args...); }
template <typename... Args>
void LogError(const Args&... args) { Log(LogLevel::kError, args...); }
template <typename... Args>
void LogDebug(const Args&... args) { Log(LogLevel::kDebug, args...); }

}  // namespace mla

#endif  // MLA_ENGINE_COMMON_LOG_H_
