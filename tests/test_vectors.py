"""Tests for vaecli.files.vectors: latent vector formats, writing and reading. No torch here."""

import io
import json

import numpy as np
import pytest
import safetensors.numpy
from helpers import input_error
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vaecli.errors import InputError
from vaecli.files.vector_reader import read_vectors
from vaecli.files.vectors import FORMATS, write_vectors

# Values that break naive float formatting: signed zero, subnormals, the float32
# extremes, and numbers with no short decimal spelling.
SPECIAL = np.array(
    [
        [0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38],
        [1.17549435e-38, 3.4028235e38, -3.4028235e38, 0.1, 1 / 3],
        [np.nextafter(np.float32(1), np.float32(2)), -123456.789, 1e-7, 16777217.0, 2.5],
    ],
    dtype=np.float32,
)
TEXTS = ["plain", "tab\there", "42"]


def dump(vectors, fmt, **kwargs) -> bytes:
    out = io.BytesIO()
    write_vectors(out, vectors, fmt=fmt, **kwargs)
    return out.getvalue()


def bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)


def assert_same_bits(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == np.float32
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(bits(actual), bits(expected))


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("with_texts", [False, True])
@pytest.mark.parametrize("with_logvar", [False, True])
def test_round_trip_every_format(fmt, with_texts, with_logvar):
    texts = TEXTS if with_texts else None
    logvar = SPECIAL[::-1].copy() if with_logvar else None
    vectors, got_texts = read_vectors(dump(SPECIAL, fmt, texts=texts, logvar=logvar), dim=5)
    assert_same_bits(vectors, SPECIAL)
    assert got_texts == (None if fmt == "npy" else texts)
    assert vectors.flags.c_contiguous and vectors.flags.writeable


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_without_dim_and_explicit_fmt(fmt):
    data = dump(SPECIAL, fmt, texts=TEXTS)
    for given_fmt in (None, fmt):
        vectors, _ = read_vectors(data, fmt=given_fmt)
        assert_same_bits(vectors, SPECIAL)


def test_bit_identical_across_formats():
    arrays = [read_vectors(dump(SPECIAL, fmt, texts=TEXTS))[0] for fmt in FORMATS]
    for array in arrays:
        assert_same_bits(array, arrays[0])
    assert_same_bits(arrays[0], SPECIAL)


def test_float64_input_is_written_as_float32():
    values = np.array([[0.1, 1e-300]])
    vectors, _ = read_vectors(dump(values, "tsv"))
    assert_same_bits(vectors, values.astype(np.float32))


def test_jsonl_layout_exact():
    z = np.array([[0.5, -0.0]], np.float32)
    lv = np.array([[0.1, 2.0]], np.float32)
    assert dump(z, "jsonl") == b'{"z": [0.5, -0.0]}\n'
    assert dump(z, "jsonl", texts=["h\u00e9 \u2028 \U0001f600"], logvar=lv, key="mu") == (
        '{"text": "h\u00e9 \u2028 \U0001f600", "mu": [0.5, -0.0], '
        '"logvar": [0.10000000149011612, 2.0]}\n'
    ).encode()


def test_jsonl_logvar_is_bit_exact():
    logvar = SPECIAL * np.float32(0.5)
    data = dump(SPECIAL, "jsonl", logvar=logvar)
    parsed = np.array([json.loads(line)["logvar"] for line in data.splitlines()], dtype=np.float32)
    assert_same_bits(parsed, logvar)


def test_tsv_layout_exact():
    z = np.array([[0.5, -0.0], [1e-45, 3.0]], np.float32)
    assert dump(z, "tsv") == b"0.5\t-0.0\n1.401298464324817e-45\t3.0\n"
    lv = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    assert dump(z, "tsv", texts=["a\tb\nc\\d", "7"], logvar=lv) == (
        b"a\\tb\\nc\\\\d\t0.5\t-0.0\t1.0\t2.0\n"
        b"\\&7\t1.401298464324817e-45\t3.0\t3.0\t4.0\n"
    )


def test_tsv_logvar_without_dim_is_read_as_part_of_the_vector():
    logvar = -SPECIAL
    data = dump(SPECIAL, "tsv", texts=TEXTS, logvar=logvar)
    vectors, texts = read_vectors(data)
    assert_same_bits(vectors, np.concatenate([SPECIAL, logvar], axis=1))
    assert texts == TEXTS
    vectors, _ = read_vectors(data, dim=5)
    assert_same_bits(vectors, SPECIAL)


@pytest.mark.parametrize(
    "text",
    ["", " ", "42", "-0.0", "nan", "Infinity", " 1e5 ", "\\&x", "a\\b", "\\", "x\r", "\0", "\t", "\n\n",
     "[citation] \t{x}", "\u0663\u0664"],
)
def test_tsv_text_escaping_round_trips(text):
    z = np.array([[1.0, 2.0]], np.float32)
    vectors, texts = read_vectors(dump(z, "tsv", texts=[text]))
    assert texts == [text]
    assert_same_bits(vectors, z)


def test_tsv_unknown_escape_kept_verbatim():
    _, texts = read_vectors(b"C:\\path\\x\t1.0\n")
    assert texts == ["C:\\path\\x"]


def test_safetensors_contents():
    logvar = SPECIAL / np.float32(3)
    data = dump(SPECIAL, "safetensors", texts=TEXTS, logvar=logvar, key="mu")
    tensors = safetensors.numpy.load(data)
    assert sorted(tensors) == ["logvar", "mu"]
    assert_same_bits(tensors["logvar"], logvar)
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    assert json.loads(header["__metadata__"]["texts"]) == TEXTS


def test_safetensors_custom_key_single_tensor():
    vectors, texts = read_vectors(dump(SPECIAL, "safetensors", key="latent"))
    assert_same_bits(vectors, SPECIAL)
    assert texts is None


def test_npy_is_plain_float32():
    array = np.load(io.BytesIO(dump(SPECIAL, "npy", texts=TEXTS, logvar=SPECIAL)), allow_pickle=False)
    assert array.dtype == np.dtype("<f4")
    assert_same_bits(array, SPECIAL)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([[1.0, np.nan]], np.float32), "row 0"),
        (np.array([[1.0], [np.inf]], np.float32), "row 1"),
        (np.array([[1e39]]), "row 0"),
    ],
)
def test_write_refuses_non_finite(bad, message):
    with pytest.raises(ValueError, match=message) as info:
        dump(bad, "jsonl")
    assert not isinstance(info.value, InputError)
    with pytest.raises(ValueError, match="logvar row"):
        dump(np.ones_like(bad, dtype=np.float32), "tsv", logvar=bad)


def test_write_argument_checks():
    z = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="2-D"):
        dump(np.zeros(3, np.float32), "jsonl")
    with pytest.raises(ValueError, match="1 texts for 2 vectors"):
        dump(z, "jsonl", texts=["a"])
    with pytest.raises(ValueError, match="logvar shape"):
        dump(z, "jsonl", logvar=np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="unknown format"):
        dump(z, "csv")
    with pytest.raises(ValueError, match="reserved"):
        dump(z, "jsonl", key="text")


# --------------------------------------------------------------------------- detection and reading


@pytest.mark.parametrize(
    "data, expected_texts",
    [
        (b'{"z": [1, 2.5]}\n{"z": [3, 4]}\n', None),
        (b'  \n[1, 2.5]\n[3, 4]', None),
        (b'{"mu": [1, 2.5], "text": "a"}\n{"mu": [3, 4], "text": "b"}\n', ["a", "b"]),
        (b'{"vector": [1, 2.5]}\r\n{"vector": [3, 4]}\r\n', None),
        (b'{"vector": [9, 9], "mu": [9, 9], "z": [1, 2.5]}\n{"z": [3, 4]}\n', None),
        (b"1\t2.5\n3\t4\n", None),
        (b"a\t1\t2.5\n\n b \t3\t4\n", ["a", " b "]),
        (b"[x]\t1\t2.5\n{y}\t3\t4\n", ["[x]", "{y}"]),
        (b"\xef\xbb\xbf1\t2.5\r\n3\t4", None),
    ],
)
def test_text_format_detection(data, expected_texts):
    vectors, texts = read_vectors(data)
    assert_same_bits(vectors, np.array([[1, 2.5], [3, 4]], np.float32))
    assert texts == expected_texts


def test_numeric_looking_texts_of_a_foreign_tsv_need_dim():
    data = b"1\t0.5\t0.25\n2\t0.75\t1.0\n"
    vectors, texts = read_vectors(data, dim=2)
    assert texts == ["1", "2"]
    assert_same_bits(vectors, np.array([[0.5, 0.25], [0.75, 1.0]], np.float32))
    assert read_vectors(data)[0].shape == (2, 3)
    assert read_vectors(data, dim=3)[1] is None


def test_npy_one_dimensional_is_one_row_and_other_dtypes_convert():
    buffer = io.BytesIO()
    np.save(buffer, np.array([1.5, -2.0], dtype=">f8"))
    vectors, texts = read_vectors(buffer.getvalue(), name="v.npy")
    assert_same_bits(vectors, np.array([[1.5, -2.0]], np.float32))
    assert texts is None


# --------------------------------------------------------------------------- read errors


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data, fmt, dim, expected",
    [
        (b'{"z": [1, 2]}\n{"z": [1,\n', None, None, "vec line 2: bad JSON"),
        (b'{"z": [1, 2]}\n{"z": [1, 2]}}\n', "jsonl", None, "vec line 2: bad JSON"),
        (b'{"text": "a", "q": [1]}\n', None, None, 'vec line 1: no "z", "mu" or "vector" key'),
        (b'{"z": [1, "a"]}\n', None, None, "vec line 1: value 2 is '\"a\"', not a number"),
        (b'{"z": [1, true]}\n', None, None, "vec line 1: value 2 is 'true', not a number"),
        (b'{"z": []}\n', None, None, "vec line 1: the vector must be a non-empty JSON list"),
        (b'{"z": [[1]]}\n', None, None, "vec line 1: value 1 is '[1]', not a number"),
        (b'"hello"\n', "jsonl", None, "vec line 1: expected a JSON object or list"),
        (b'{"z": [1, 2]}\n\n{"z": [1, 2, 3]}\n', None, None, "vec line 3: vector has 3 values but line 1 has 2"),
        (b'{"z": [1, NaN]}\n', None, None, "vec line 1: NaN, infinite or out-of-float32-range value"),
        (b'{"z": [1]}\n{"z": [1e39]}\n', None, None, "vec line 2: NaN, infinite or out-of-float32-range"),
        (b'{"z": [1' + b"0" * 400 + b"]}\n", None, None, "vec line 1: value out of float32 range"),
        (b'{"z": [1], "text": "a"}\n{"z": [2]}\n', None, None, 'vec line 2: "text" is on some lines'),
        (b'{"z": [1], "text": 5}\n', None, None, 'vec line 1: "text" must be a string'),
        (b"", None, None, "no vectors in vec"),
        (b"\n \r\n\t\n", None, None, "no vectors in vec"),
        (b"", "npy", None, "no vectors in vec"),
        (b"\n\n" + b'{"z": [' + b", ".join([b"1"] * 16) + b"]}\n", None, 32,
         "vec line 3: vector has 16 values, the model's latent has 32"),
        (b"1\t2\n\n3\t4\t5\n", None, None, "vec line 3: row has 3 tab-separated fields but line 1 has 2"),
        (b"1\tx\t3\n", None, None, "vec line 1: field 2 is 'x', not a number"),
        (b"t\t1\t\n", None, None, "vec line 1: field 3 is '', not a number"),
        (b"1\tinf\n", None, None, "vec line 1: NaN, infinite or out-of-float32-range value"),
        (b"hello world\nsecond\n", None, None, "vec line 1: no tab-separated numbers"),
        (b"0.1 0.2 0.3\n", None, None, "vec line 1: no tab-separated numbers"),
        (b"a\t1\t2\t3\n", None, 2, "vec line 1: vector has 3 values, the model's latent has 2"),
        (b"1\t2\n", "npy", None, "vec is not a .npy file"),
        (b"\x93NUMPY garbage", None, None, "vec is not a valid .npy file"),
        (b"\x1f\x8b\x08\x00rest", None, None, "vec is gzip-compressed"),
        (b"1\t\x002\n", None, None, "vec looks like a binary file (NUL byte at offset 2, line 1)"),
        (b"1\t2\n\xe9\t3\n", None, None, "vec is not valid UTF-8 (byte 0xe9 at offset 4, line 2)"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all", None, None, "vec is not a valid .safetensors"),
        (b"1\t2\n", "safetensors", None, "vec is not a valid .safetensors file"),
    ],
)
def test_read_vector_errors(data, fmt, dim, expected):
    message = input_error(read_vectors, data, fmt=fmt, name="vec", dim=dim)
    assert message.startswith(expected), message


@pytest.mark.parametrize(
    "array, allow_pickle, dim, expected",
    [
        (np.zeros((2, 2, 2), np.float32), False, None, "v.npy: array has shape (2, 2, 2); expected (n, d)"),
        (np.array([[1.0], [None]], dtype=object), True, None, "v.npy holds Python objects (dtype object)"),
        (np.array([["a", "b"]]), False, None, "v.npy: array has dtype <U1; expected float vectors"),
        (np.array([[1 + 2j]]), False, None, "v.npy: array has dtype complex128"),
        (np.zeros((0, 4), np.float32), False, None, "no vectors in v.npy"),
        (np.zeros((3, 0), np.float32), False, None, "v.npy: vectors have 0 values"),
        (np.zeros((3, 16), np.float32), False, 32, "v.npy: vectors have 16 values, the model's latent has 32"),
        (np.array([[1.0], [2.0], [np.nan]]), False, None, "v.npy row 3: NaN, infinite"),
    ],
)
def test_read_npy_errors(array, allow_pickle, dim, expected):
    message = input_error(read_vectors, npy_bytes(array, allow_pickle), name="v.npy", dim=dim)
    assert message.startswith(expected), message


def test_read_npz_is_refused():
    buffer = io.BytesIO()
    np.savez(buffer, z=np.zeros((1, 2), np.float32))
    assert input_error(read_vectors, buffer.getvalue(), fmt="npy", name="v").startswith("v is not a .npy file")


def test_read_safetensors_errors():
    two = safetensors.numpy.save({"a": np.zeros((1, 2), np.float32), "b": np.zeros((1, 2), np.float32)})
    assert input_error(read_vectors, two, name="s") == 's: no "z", "mu" or "vector" tensor (found: a, b)'
    bad_texts = safetensors.numpy.save({"z": np.zeros((2, 2), np.float32)}, metadata={"texts": '["only one"]'})
    assert input_error(read_vectors, bad_texts, name="s") == "s: metadata has 1 texts for 2 vectors"
    not_list = safetensors.numpy.save({"z": np.zeros((1, 2), np.float32)}, metadata={"texts": "{"})
    assert input_error(read_vectors, not_list, name="s") == 's: metadata "texts" is not a JSON list of strings'
    wrong_dim = dump(np.zeros((1, 3), np.float32), "safetensors")
    assert input_error(read_vectors, wrong_dim, name="s", dim=4) == (
        "s: vectors have 3 values, the model's latent has 4"
    )


def test_error_message_quotes_unprintable_names():
    assert input_error(read_vectors, b"", name="a\nb") == "no vectors in 'a\\nb'"


def test_read_vectors_argument_checks():
    with pytest.raises(ValueError, match="unknown format"):
        read_vectors(b"1\n", fmt="csv")
    with pytest.raises(ValueError, match="dim must be positive"):
        read_vectors(b"1\n", dim=0)


# --------------------------------------------------------------------------- properties


@st.composite
def vectors_and_texts(draw):
    n = draw(st.integers(1, 5))
    d = draw(st.integers(1, 8))
    floats = st.floats(width=32, allow_nan=False, allow_infinity=False)
    vectors = draw(hnp.arrays(np.float32, (n, d), elements=floats))
    texts = draw(st.none() | st.lists(st.text(max_size=20), min_size=n, max_size=n))
    logvar = draw(st.none() | hnp.arrays(np.float32, (n, d), elements=floats))
    return vectors, texts, logvar


@settings(max_examples=60, deadline=None)
@given(case=vectors_and_texts())
def test_property_vector_round_trip(case):
    vectors, texts, logvar = case
    d = vectors.shape[1]
    for fmt in FORMATS:
        got, got_texts = read_vectors(dump(vectors, fmt, texts=texts, logvar=logvar), dim=d)
        assert_same_bits(got, vectors)
        assert got_texts == (None if fmt == "npy" else texts)
    # Without dim every format still round-trips when there is no logvar half to strip.
    for fmt in FORMATS:
        got, got_texts = read_vectors(dump(vectors, fmt, texts=texts))
        assert_same_bits(got, vectors)
        assert got_texts == (None if fmt == "npy" else texts)
