"""reject_unknown_kwargs: the shared check that keeps ``forward(**kwargs)`` from swallowing typos (the first step
of every model's ``forward``, ``refseg.modeling.input_checks``)."""

import pytest

from refseg.modeling.input_checks import reject_unknown_kwargs


def forward(pixel_values, input_ids, mask_labels=None, return_dict=None, **kwargs):
    reject_unknown_kwargs(kwargs, forward)
    return "ran"


def test_known_arguments_pass():
    assert forward(1, 2, mask_labels=3, return_dict=True) == "ran"


def test_unknown_arguments_raise_type_error_naming_them_with_a_suggestion():
    with pytest.raises(TypeError) as info:
        forward(1, 2, labels=[3], return_dcit=True)
    message = str(info.value)
    assert "forward() got unexpected keyword argument(s)" in message
    assert "'labels' (did you mean 'mask_labels'?)" in message
    assert "'return_dcit' (did you mean 'return_dict'?)" in message
    assert "it accepts pixel_values, input_ids, mask_labels, return_dict" in message


def test_an_argument_with_no_close_name_gets_no_suggestion():
    with pytest.raises(TypeError, match=r"'zzz'; it accepts"):
        forward(1, 2, zzz=0)
