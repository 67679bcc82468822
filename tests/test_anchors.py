"""The C/QAPI locator on small snippets: what each anchor selects."""

import re

import pytest

from generator.generate.anchors import NotFound, resolve
from generator.spec.model import Anchor

C_SRC = """\
#include "x.h"

/*
 * Doc comment of foo.
 */
static int foo(int a)
{
    int b = a + 1;

    if (b > 2) {
        b = 2;
    }
    call_something(a,
                   b);
    return b;
}

typedef struct Bar {
    int x;
    int y;
} Bar;

struct Baz {
    int z;
};

static const int table[] = {
    1,
    2,
};

void api(void);
"""

QAPI_SRC = """\
##
# @Thing:
#
# A thing.
#
# Since: 1.0
##
{ 'struct': 'Thing',
  'data': { 'a': 'int' } }

##
# @other:
##
{ 'command': 'other' }
"""


def lines_of(text, anchor, path="x.c"):
    region = resolve(text, path, anchor)
    return text.splitlines()[region.start:region.end], region


def anchor(kind=None, name=None, match=None):
    return Anchor(kind, name, re.compile(match, re.M) if match else None,
                  None)


def test_function_scope_includes_its_doc_comment():
    lines, region = lines_of(C_SRC, anchor("function", "foo"))
    assert lines[0] == "/*" and lines[-1] == "}"
    assert C_SRC.splitlines()[region.body[0]] == "    int b = a + 1;"
    assert C_SRC.splitlines()[region.body[1]] == "}"


def test_match_on_a_statement_selects_the_whole_statement():
    lines, _ = lines_of(C_SRC, anchor("function", "foo", r"if \(b > 2\)"))
    assert lines == ["    if (b > 2) {", "        b = 2;", "    }"]
    lines, _ = lines_of(C_SRC, anchor("function", "foo", r"call_something"))
    assert lines == ["    call_something(a,", "                   b);"]


def test_match_starting_with_indentation_still_selects_the_statement():
    lines, _ = lines_of(C_SRC, anchor("function", "foo",
                                      r"^    if \(b > 2\) \{\n"))
    assert lines == ["    if (b > 2) {", "        b = 2;", "    }"]


def test_match_inside_a_statement_selects_the_matched_lines():
    lines, _ = lines_of(C_SRC, anchor("function", "foo", r"^\s+b\);"))
    assert lines == ["                   b);"]


def test_typedef_struct_by_tag_or_name():
    for name in ("Bar",):
        lines, _ = lines_of(C_SRC, anchor("struct", name))
        assert lines[0] == "typedef struct Bar {" and lines[-1] == "} Bar;"
    lines, _ = lines_of(C_SRC, anchor("struct", "Baz", r"int z;"))
    assert lines == ["    int z;"]


def test_declaration_and_initializer():
    lines, _ = lines_of(C_SRC, anchor("declaration", "api"))
    assert lines == ["void api(void);"]
    lines, region = lines_of(C_SRC, anchor("declaration", "table"))
    assert lines[-1] == "};"
    assert C_SRC.splitlines()[region.body[1]] == "};"


def test_qapi_definition_spans_doc_and_expression():
    lines, _ = lines_of(QAPI_SRC, anchor("qapi", "Thing"), "x.json")
    assert lines[0] == "##" and lines[-1] == "  'data': { 'a': 'int' } }"
    lines, _ = lines_of(QAPI_SRC, anchor("qapi", "other"), "x.json")
    assert lines[-1] == "{ 'command': 'other' }"


@pytest.mark.parametrize("bad, message", [
    (anchor("function", "nope"), "function 'nope' not found"),
    (anchor("function", "foo", "nothing-like-this"), "does not match"),
    (anchor(None, None, r"int [xyz];"), "matches 3 times"),
    (anchor("struct", "Qux"), "struct 'Qux' not found"),
])
def test_not_found_says_why(bad, message):
    with pytest.raises(NotFound, match=re.escape(message)):
        resolve(C_SRC, "x.c", bad)


def test_c_scopes_need_a_c_file():
    with pytest.raises(NotFound, match="needs a C file"):
        resolve(QAPI_SRC, "x.json", anchor("function", "foo"))
