from refseg.error_messages import one_line


def test_one_line_joins_lines_and_drops_terminal_escapes():
    assert one_line(ValueError("bad\n  weights\tfile")) == "bad weights file"
    assert one_line(OSError("\x1b[31mred\x1b[0m alert")) == "red alert"
    assert one_line(KeyError()) == "KeyError"
