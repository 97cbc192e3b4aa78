// ChatTemplate: parsing, evaluation semantics (jinja2's) and rejection of unsupported
// constructs. Byte-identity with jinja2 on real templates is chat_golden_test's job; the
// expectations here were checked against Python jinja2 3.1.6.
#include "engine/chat/chat_template.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace mla {
namespace {

absl::StatusOr<std::string> Render(const std::string& source,
                                   const std::vector<ChatTurn>& messages = {},
                                   bool add_generation_prompt = false) {
  auto tmpl = ChatTemplate::Parse(source);
  if (!tmpl.ok()) return tmpl.status();
  ChatRenderOptions options;
  options.add_generation_prompt = add_generation_prompt;
  options.bos_token = "<s>";
  options.eos_token = "</s>";
  return (*tmpl)->Render(messages, options);
}

std::string MustRender(const std::string& source, const std::vector<ChatTurn>& messages = {}) {
  auto out = Render(source, messages);
  EXPECT_TRUE(out.ok()) << out.status() << " for: " << source;
  return out.ok() ? *out : "<error>";
}

// Parse must fail with InvalidArgument mentioning `line` and `what`.
void ExpectParseError(const std::string& source, int line, const std::string& what) {
  auto tmpl = ChatTemplate::Parse(source);
  ASSERT_FALSE(tmpl.ok()) << "parsed: " << source;
  EXPECT_EQ(tmpl.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(tmpl.status().message());
  EXPECT_NE(message.find("line " + std::to_string(line)), std::string::npos) << message;
  EXPECT_NE(message.find(what), std::string::npos) << message << " (wanted " << what << ")";
}

const std::vector<ChatTurn> kChat = {{"system", "Sys"}, {"user", "Hi"}, {"assistant", "Yo"}};

TEST(ChatTemplateTest, WhitespaceControl) {
  EXPECT_EQ(MustRender("a\n  {% if true %}\n  x\n  {% endif %}\nb"), "a\n  x\nb");
  EXPECT_EQ(MustRender("a  {{- 'b' -}}  \n c"), "abc");
  EXPECT_EQ(MustRender("{% for m in messages %}\n{{ m.role }}\n{% endfor %}", kChat),
            "system\nuser\nassistant\n");
  EXPECT_EQ(MustRender("{%- for m in messages -%}\n  {{ m.role }},\n{%- endfor %}", kChat),
            "system,user,assistant,");
}

TEST(ChatTemplateTest, LoopVariables) {
  EXPECT_EQ(MustRender("{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
                       "{{ loop.revindex0 }}{{ loop.length }}{{ loop.first }}{{ loop.last }};"
                       "{% endfor %}",
                       kChat),
            "10323TrueFalse;21213FalseFalse;32103FalseTrue;");
  EXPECT_EQ(MustRender("{% for m in messages if m.role != 'system' %}{{ loop.index }}/{{ loop.length }}"
                       "{% if loop.previtem is defined %}<{{ loop.previtem.role }}{% endif %} {% endfor %}",
                       kChat),
            "1/2 2/2<user ");
  EXPECT_EQ(MustRender("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(MustRender("{% for x in [1, 2, 3, 4] %}{% if x == 2 %}{% continue %}{% endif %}"
                       "{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
            "13");
  EXPECT_EQ(MustRender("{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }} "
                       "{% endfor %}{{ loop.index }}|{% endfor %}"),
            "1x1 1y2 1|2x1 2y2 2|");
  EXPECT_EQ(MustRender("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}{{ v }}{% endfor %}"),
            "a1b2");
  EXPECT_EQ(MustRender("{{ loop }}"), "");
}

TEST(ChatTemplateTest, SetScopingFollowsJinja) {
  // Each iteration starts from the outer value; assignments do not leak out of the loop.
  EXPECT_EQ(MustRender("{% set x = 0 %}{% for i in [1, 2] %}{{ x }}{% set x = x + 1 %}{{ x }}"
                       "{% endfor %}{{ x }}"),
            "01010");
  EXPECT_EQ(MustRender("{% for i in [1, 2] %}{% if i == 2 %}{{ y }}{% endif %}{% set y = i %}"
                       "{% endfor %}[{{ y }}]"),
            "[]");
  // `if` does not open a scope.
  EXPECT_EQ(MustRender("{% if true %}{% set z = 5 %}{% endif %}{{ z }}"), "5");
  EXPECT_EQ(MustRender("{% set s %}a{{ 1 + 1 }}b{% endset %}[{{ s }}]"), "[a2b]");
}

TEST(ChatTemplateTest, NamespaceAssignmentCrossesScopes) {
  EXPECT_EQ(MustRender("{% set ns = namespace(n=0, text='') %}{% for m in messages %}"
                       "{% set ns.n = ns.n + 1 %}{% set ns.text = ns.text + m.content %}"
                       "{% endfor %}{{ ns.n }} {{ ns.text }} {{ ns.missing is defined }}",
                       kChat),
            "3 SysHiYo False");
  EXPECT_EQ(MustRender("{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns['b'] }}"), "12");
  auto not_ns = Render("{% set d = {'a': 1} %}\n{% set d.a = 2 %}");
  ASSERT_FALSE(not_ns.ok());
  EXPECT_NE(not_ns.status().message().find("line 2"), std::string::npos) << not_ns.status();
  EXPECT_FALSE(Render("{% set ns = namespace(_hidden=1) %}").ok());
}

TEST(ChatTemplateTest, Filters) {
  EXPECT_EQ(MustRender("{{ '  x y \n' | trim }}|{{ 'xxaxx' | trim('x') }}"), "x y|a");
  EXPECT_EQ(MustRender("{{ '日本語🙂' | length }} {{ [1, 2] | count }} {{ {'a': 1} | length }}"),
            "4 2 1");
  EXPECT_EQ(MustRender("{{ {'k': ['é', 1, 2.5, none, true], 'q': 'a\"b\\n'} | tojson }}"),
            "{\"k\": [\"é\", 1, 2.5, null, true], \"q\": \"a\\\"b\\n\"}");
  EXPECT_EQ(MustRender("{{ 'é' | tojson(ensure_ascii=true) }}"), "\"\\u00e9\"");
  EXPECT_EQ(MustRender("{{ [1, [2]] | tojson(indent=1) }}"), "[\n 1,\n [\n  2\n ]\n]");
  EXPECT_EQ(MustRender("{{ nope | default('d') }}{{ '' | default('e', true) }}{{ 0 | default(5) }}"),
            "de0");
  EXPECT_EQ(MustRender("{{ ['a', 1, none] | join('-') }} {{ 'abc' | upper }} {{ 'ABC' | lower }}"),
            "a-1-None ABC abc");
  EXPECT_EQ(MustRender("{{ 'a b' | replace(' ', '_') }} {{ [3, 4] | first }} {{ 'xyz' | last }}"),
            "a_b 3 z");
  EXPECT_EQ(MustRender("{{ {'a': 1} | items | list }}"), "[('a', 1)]");
  // Case mapping beyond ASCII would need Unicode tables: refused rather than guessed.
  EXPECT_FALSE(Render("{{ 'Ä' | lower }}").ok());
}

TEST(ChatTemplateTest, UndefinedBehavesLikeJinjaDefault) {
  EXPECT_EQ(MustRender("[{{ nope }}]{% if nope %}yes{% else %}no{% endif %}"), "[]no");
  EXPECT_EQ(MustRender("{{ nope is defined }} {{ nope is undefined }} {{ not nope }}"),
            "False True True");
  EXPECT_EQ(MustRender("{% for m in messages %}{{ m.tool_calls is defined }}"
                       "{% for t in m['tool_calls'] %}x{% endfor %}{% endfor %}",
                       {{"user", "a"}}),
            "False");
  EXPECT_EQ(MustRender("{{ nope ~ 'a' }}{{ nope | length }}{{ nope == nope }}"), "a0True");
  auto attr = Render("line1\n{{ nope.field }}");
  ASSERT_FALSE(attr.ok());
  EXPECT_NE(attr.status().message().find("line 2"), std::string::npos) << attr.status();
  EXPECT_NE(attr.status().message().find("'nope' is undefined"), std::string::npos);
  EXPECT_FALSE(Render("{{ nope + 'a' }}").ok());
}

TEST(ChatTemplateTest, ExpressionsFollowPythonSemantics) {
  EXPECT_EQ(MustRender("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }}"),
            "7 9 64 4");
  EXPECT_EQ(MustRender("{{ 7 / 2 }} {{ 7 // -2 }} {{ -7 % 3 }} {{ 1e-5 }} {{ 2.0 * 3 }}"),
            "3.5 -4 2 1e-05 6.0");
  EXPECT_EQ(MustRender("{{ 'a' if false }}|{{ 'a' if 0 else 'b' }}|{{ none or 'x' }}|{{ 1 and 2 }}"),
            "|b|x|2");
  EXPECT_EQ(MustRender("{{ not 1 == 2 }} {{ 1 < 2 <= 2 }} {{ 'b' > 'a' }} {{ 'ab' in 'cabd' }}"),
            "True True True True");
  EXPECT_EQ(MustRender("{{ 'héllo'[1:3] }} {{ [1, 2, 3][::-1] }} {{ 'abc'[-1] }} {{ [1][5] }}"),
            "él [3, 2, 1] c ");
  EXPECT_EQ(MustRender("{{ \"it's\" }} {{ [\"it's\", 'a\\nb'] }} {{ {'k': none} }}"),
            "it's [\"it's\", 'a\\nb'] {'k': None}");
  EXPECT_EQ(MustRender("{{ '  a b  '.strip() }}|{{ 'a,b'.split(',') }}|{{ 'abc'.startswith('ab') }}"),
            "a b|['a', 'b']|True");
  EXPECT_FALSE(Render("{{ 'a' < 1 }}").ok());
  EXPECT_FALSE(Render("{{ 1 // 0 }}").ok());
}

TEST(ChatTemplateTest, RaiseExceptionReturnsItsMessage) {
  auto out = Render("{% for m in messages %}{% if m.role == 'assistant' %}"
                    "{{ raise_exception('no assistant turns: ' ~ loop.index) }}{% endif %}{% endfor %}",
                    kChat);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out.status().message(), "no assistant turns: 3");
}

TEST(ChatTemplateTest, ContextVariables) {
  EXPECT_EQ(MustRender("{{ bos_token }}{{ eos_token }}{{ add_generation_prompt }}"
                       "{{ tools is none }}{{ documents is defined }}{{ messages | length }}"),
            "<s></s>FalseTrueTrue0");
  auto gen = Render("{% if add_generation_prompt %}G{% endif %}", {}, true);
  ASSERT_TRUE(gen.ok());
  EXPECT_EQ(*gen, "G");
}

TEST(ChatTemplateTest, DeepSeekV3StyleRendering) {
  const std::string tmpl =
      "{% set ns = namespace(system_prompt='') %}{%- for message in messages %}"
      "{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}"
      "{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}"
      "{%- for message in messages %}{%- if message['role'] == 'user' %}"
      "{{ '<｜User｜>' + message['content'] }}{%- elif message['role'] == 'assistant' %}"
      "{{ '<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}{%- endif %}"
      "{%- endfor %}{% if add_generation_prompt %}{{ '<｜Assistant｜>' }}{% endif %}";
  auto out = Render(tmpl, {{"system", "S"}, {"user", "{{ x }} 你好"}}, true);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "<s>S<｜User｜>{{ x }} 你好<｜Assistant｜>");
}

TEST(ChatTemplateTest, UnsupportedConstructsAreParseErrors) {
  ExpectParseError("a\n{% macro m() %}x{% endmacro %}", 2, "macro");
  ExpectParseError("\n\n{% include 'other.jinja' %}", 3, "include");
  ExpectParseError("{% extends 'base' %}", 1, "extends");
  ExpectParseError("x\n{{ messages | unknown_filter }}", 2, "unknown_filter");
  ExpectParseError("{% if x is unknown_test %}{% endif %}", 1, "unknown_test");
  ExpectParseError("\n{{ strftime_now('%Y') }}", 2, "strftime_now");
  ExpectParseError("{{ 'a'.format(1) }}", 1, "format");
  ExpectParseError("{% for x in xs recursive %}{% endfor %}", 1, "recursive");
  ExpectParseError("{% set a, b = 1, 2 %}", 1, "tuple");
  ExpectParseError("{{ (1, 2) }}", 1, "tuple");
  ExpectParseError("{% if x %}\n\nnever closed", 3, "endif");
  ExpectParseError("{% endfor %}", 1, "endfor");
  ExpectParseError("{{ }}", 1, "unexpected");
  ExpectParseError("{{ " + std::string(1000, '(') + "1" + std::string(1000, ')') + " }}", 1,
                   "nested too deeply");
  std::string deep;
  for (int i = 0; i < 1000; ++i) deep += "{% if true %}";
  ExpectParseError(deep, 1, "nested too deeply");
}

}  // namespace
}  // namespace mla
