"""csyntax: names of C declarations as tree-sitter-c parses them."""

from generator import csyntax


def test_prototypes_are_named_and_function_pointers_are_not_prototypes():
    text = ("extern void (*hook)(int);\n"
            "int f(int);\n"
            "void *(g)(void);\n"
            "char *h(void);\n"
            "int (*table[2])(void);\n"
            "int x;\n")
    assert [(name, node.start_point[0] + 1)
            for name, node in csyntax.function_prototypes(text)] == \
        [("f", 2), ("g", 3), ("h", 4)]


def test_a_parenthesized_definition_is_named():
    text = "static int (f)(void)\n{\n    return 0;\n}\nvoid g(void) {}\n"
    assert [(name, line) for name, line, _ in
            csyntax.function_definitions(text)] == [("f", 1), ("g", 5)]
