"""Tests for vaecli.io: sentence input, vector formats, atomic writes. No torch here."""

import gzip
import io
import json
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import vaecli.io as vio
from vaecli.io import (
    FORMATS,
    InputError,
    Lines,
    atomic_open,
    atomic_write_bytes,
    check_text_file,
    decode_text,
    read_lines,
    read_vectors,
    write_vectors,
)

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


def input_error(func, *args, **kwargs) -> str:
    """Call func expecting InputError; return its message after checking it is one line."""
    with pytest.raises(InputError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message and message.strip() == message
    return message


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


# --------------------------------------------------------------------------- read_lines


def write(tmp_path: Path, data: bytes, name: str = "in.txt") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_read_lines_from_args_counts_blanks():
    assert read_lines(["  hello ", "", "   ", "world\t"]) == Lines(["hello", "world"], 2)


def test_read_lines_args_win_over_path_and_stdin(tmp_path):
    path = write(tmp_path, b"from file\n")
    assert read_lines(["arg"], path=path, stdin=io.BytesIO(b"from stdin")).texts == ["arg"]
    assert read_lines([], path=path, stdin=io.BytesIO(b"from stdin")).texts == ["from file"]


def test_read_lines_from_stdin_and_dash():
    assert read_lines(stdin=io.BytesIO(b"a\n\nb\n")) == Lines(["a", "b"], 1)
    assert read_lines(path="-", stdin=io.BytesIO(b"a\n")) == Lines(["a"], 0)


def test_read_lines_accepts_text_stdin_wrapper():
    wrapper = io.TextIOWrapper(io.BytesIO("\ufeffcaf\u00e9\n".encode()), encoding="utf-8")
    assert read_lines(stdin=wrapper).texts == ["caf\u00e9"]


def test_read_lines_needs_a_source():
    assert input_error(read_lines).startswith("no input:")
    assert input_error(read_lines, [], "-").startswith("no input:")
    with pytest.raises(TypeError):
        read_lines("one sentence")


def test_read_lines_rejects_undecodable_argument():
    assert input_error(read_lines, ["ok", "caf\udce9"]).startswith("argument 2 is not valid UTF-8")


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"a\r\nb\r\n", Lines(["a", "b"], 0)),
        (b"a\nb", Lines(["a", "b"], 0)),
        (b"\xef\xbb\xbfa\nb\n", Lines(["a", "b"], 0)),
        (b"\n\n  a  \n \t \n\nb\n\n", Lines(["a", "b"], 5)),
        (b"", Lines([], 0)),
        (b"\n", Lines([], 1)),
        (b"a\rb\n", Lines(["a\rb"], 0)),
    ],
)
def test_read_lines_file_and_stdin_agree(tmp_path, data, expected):
    assert read_lines(path=write(tmp_path, data)) == expected
    assert read_lines(stdin=io.BytesIO(data)) == expected


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85"])
def test_unicode_line_separators_do_not_split(tmp_path, separator):
    line = f"left{separator}right"
    assert read_lines(path=write(tmp_path, f"{line}\nnext\n".encode())).texts == [line, "next"]


def test_unicode_passes_through_unchanged(tmp_path):
    lines = [
        "family \U0001f468\u200d\U0001f469\u200d\U0001f467 and flag \U0001f1fa\U0001f1e6",
        "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd \u0645\u0631\u062d\u0628\u0627 \u202bembedded\u202c",
        "cafe\u0301 n\u0303 a\u0308\u0304 Z\u0351\u0360\u0361",
        "\u00a0is stripped but inner\u00a0stays\u3000",
    ]
    expected = [*lines[:3], "is stripped but inner\u00a0stays"]
    got = read_lines(path=write(tmp_path, "\n".join(lines).encode())).texts
    assert got == expected
    assert [len(t) for t in got] == [len(t) for t in expected]


def test_long_line_is_not_truncated(tmp_path):
    line = " ".join(f"word{i}" for i in range(20_000))
    assert read_lines(path=write(tmp_path, (line + "\nshort\n").encode())).texts == [line, "short"]
    assert read_lines([line]).texts == [line]


def test_latin1_file_is_refused_with_position(tmp_path):
    path = write(tmp_path, "ok\nna\u00efve caf\u00e9\n".encode("latin-1"), "latin.txt")
    message = input_error(read_lines, path=path)
    assert message == (
        f"{path} is not valid UTF-8 (byte 0xef at offset 5, line 2); "
        f"if it is Latin-1, convert it: iconv -f latin1 -t utf-8 {path} > fixed.txt"
    )
    assert input_error(check_text_file, path) == message
    assert "pipe it through iconv -f latin1 -t utf-8" in input_error(
        read_lines, stdin=io.BytesIO("\u00e9".encode("latin-1"))
    )


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"text\nmore\x00text\n", "looks like a binary file (NUL byte at offset 9, line 2), not UTF-8 text"),
        (gzip.compress(b"hello\n"), "is gzip-compressed; decompress it first (gunzip / zcat)"),
        ("hi\n".encode("utf-16"), "is UTF-16 text; convert it first: iconv -f utf-16 -t utf-8"),
        (b"\x93NUMPY\x01\x00", "is a NumPy .npy file, not text"),
    ],
)
def test_binary_inputs_are_refused(tmp_path, data, expected):
    path = write(tmp_path, data, "in.bin")
    for call in (lambda: check_text_file(path), lambda: read_lines(path=path)):
        assert input_error(call) == f"{path} {expected}"
    assert input_error(read_lines, stdin=io.BytesIO(data)) == f"<stdin> {expected}"


def test_zip_file_is_refused(tmp_path):
    path = tmp_path / "in.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.txt", "hello\n")
    assert input_error(check_text_file, path) == f"{path} is a zip archive; extract the text file first (unzip)"


def test_missing_and_directory_paths(tmp_path):
    missing = str(tmp_path / "nope.txt")
    for call in (check_text_file, lambda p: read_lines(path=p)):
        assert input_error(call, missing) == f"{missing}: no such file"
        assert input_error(call, str(tmp_path)).startswith(f"{tmp_path} is a directory")
    below_file = write(tmp_path, b"x") + "/child"
    assert input_error(check_text_file, below_file) == f"{below_file}: no such file"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_file(tmp_path):
    path = write(tmp_path, b"secret\n")
    os.chmod(path, 0)
    try:
        assert input_error(check_text_file, path) == f"{path}: permission denied; check the file's permissions"
        assert input_error(read_lines, path=path) == f"{path}: permission denied; check the file's permissions"
    finally:
        os.chmod(path, 0o600)


def test_permission_error_while_opening_is_reported(tmp_path, monkeypatch):
    # Runs even as root (where chmod 0 does not stop reads): simulate the OS refusing.
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    path = write(tmp_path, b"secret\n")
    monkeypatch.setattr(vio, "open", refuse, raising=False)
    expected = f"{path}: permission denied; check the file's permissions"
    assert input_error(check_text_file, path) == expected
    assert input_error(read_lines, path=path) == expected


def test_check_text_file_accepts_good_files(tmp_path):
    assert check_text_file(write(tmp_path, "\ufeffh\u00e9llo \U0001f600\r\n\n".encode())) is None
    assert check_text_file(Path(write(tmp_path, b"", "empty.txt"))) is None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_check_text_file_does_not_consume_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert check_text_file(fifo) is None  # would block forever if it tried to read


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64])
def test_check_text_file_streams_across_chunk_boundaries(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(vio, "_CHUNK", chunk)
    good = "a\u00e9\u20ac\U0001f600\nb\u00e9\u20ac\U0001f600\n".encode()
    check_text_file(write(tmp_path, good))
    bad = write(tmp_path, good + b"x\xe2\x82y\n", "bad.txt")  # cut euro sign at offset len(good)+1
    assert f"(byte 0xe2 at offset {len(good) + 1}, line 3)" in input_error(check_text_file, bad)
    truncated = write(tmp_path, good + b"\xf0\x9f\x98", "cut.txt")  # file ends mid-character
    assert f"(byte 0xf0 at offset {len(good)}, line 3)" in input_error(check_text_file, truncated)
    nul = write(tmp_path, good + b"\x00", "nul.txt")
    assert f"(NUL byte at offset {len(good)}, line 3)" in input_error(check_text_file, nul)


def test_decode_text():
    assert decode_text("\ufeffa\ufeffb".encode(), "x") == "a\ufeffb"
    assert input_error(decode_text, b"ok\xff", "mine").startswith("mine is not valid UTF-8 (byte 0xff at offset 2")
    # the earlier of NUL and bad UTF-8 is the one reported
    assert "0xff" in input_error(decode_text, b"\xff\x00", "x")
    assert "NUL byte at offset 0" in input_error(decode_text, b"\x00\xff", "x")


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_creates_and_replaces(tmp_path):
    path = tmp_path / "out.bin"
    atomic_write_bytes(path, b"first")
    assert path.read_bytes() == b"first"
    atomic_write_bytes(str(path), b"second")
    assert path.read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_open_text_mode(tmp_path):
    path = tmp_path / "out.txt"
    with atomic_open(path, "w") as handle:
        handle.write("h\u00e9\nx\n")
    assert path.read_bytes() == "h\u00e9\nx\n".encode()


def test_atomic_open_keeps_old_file_when_body_raises(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"old contents\n")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(path) as handle:
            handle.write(b"half-written")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old contents\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(tmp_path / "new.bin") as handle:
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["out.jsonl"]


def test_atomic_open_permissions(tmp_path):
    existing = tmp_path / "existing"
    existing.write_bytes(b"x")
    os.chmod(existing, 0o640)
    atomic_write_bytes(existing, b"y")
    assert stat.S_IMODE(os.stat(existing).st_mode) == 0o640
    umask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "fresh", b"z")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "fresh").st_mode) == 0o644


def test_atomic_open_follows_symlink(tmp_path):
    real = tmp_path / "real"
    real.write_bytes(b"old")
    link = tmp_path / "link"
    link.symlink_to(real)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"


def test_atomic_open_bad_destinations(tmp_path):
    assert input_error(atomic_write_bytes, tmp_path, b"x").startswith(f"{tmp_path} is a directory")
    missing = tmp_path / "no" / "out"
    assert input_error(atomic_write_bytes, missing, b"x") == (
        f"cannot write {missing}: directory {tmp_path / 'no'} does not exist"
    )
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "f", "a"):
            pass


# --------------------------------------------------------------------------- properties

line_text = st.text(
    # \n and \r end lines; NUL marks binary files; surrogates cannot be UTF-8-encoded.
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00"),
    max_size=30,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line_text, max_size=12), crlf=st.booleans())
def test_property_read_lines(tmp_path, lines, crlf):
    # A leading BOM is dropped by design, so a first line starting with one reads back shorter.
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = "x" + lines[0]
    end = "\r\n" if crlf else "\n"
    path = tmp_path / "prop.txt"
    path.write_bytes("".join(line + end for line in lines).encode())
    stripped = [line.strip() for line in lines]
    expected = Lines([s for s in stripped if s], stripped.count(""))
    assert read_lines(path=str(path)) == expected
    assert read_lines(stdin=io.BytesIO(path.read_bytes())) == expected


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
