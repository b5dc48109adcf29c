"""Stop strings and UTF-8 handling: in the detokenizer itself and through the engine."""
from __future__ import annotations

from llamaserve import _native

PROMPT = "Once upon a time, in a small village,"


def test_multibyte_characters_split_over_pushes_are_never_emitted_in_halves():
    for text in ("😀", "你好", "é", "𝄞x"):
        decoder = _native.TextDecoder()
        data = text.encode()
        out = []
        for i in range(len(data)):
            piece, stopped = decoder.push(data[i:i + 1])
            assert not stopped
            out.append(piece)
        assert "".join(out) + decoder.flush() == text
        assert all("\ufffd" not in p for p in out)


def test_invalid_bytes_become_replacement_characters():
    decoder = _native.TextDecoder()
    piece, _ = decoder.push(b"\xffok")
    assert piece == "\ufffdok"
    decoder.push(b"\xe4\xbd")  # the first two bytes of a three-byte character, then the end
    assert decoder.flush() == "\ufffd"


def test_stop_string_split_across_pushes_emits_nothing_after_it():
    decoder = _native.TextDecoder(["</end>"])
    assert decoder.push(b"hello </") == ("hello ", False)
    assert decoder.push(b"en") == ("", False)
    assert decoder.push(b"d> and more") == ("", True)


def test_held_back_prefix_is_released_when_it_turns_out_not_to_be_a_stop():
    decoder = _native.TextDecoder(["STOP"])
    assert decoder.push(b"a ST") == ("a ", False)
    assert decoder.push(b"OCK") == ("STOCK", False)
    assert decoder.push(b" ST") == (" ", False)
    assert decoder.flush() == "ST"


def test_engine_stop_string_spanning_two_tokens(engine):
    pieces = list(engine.stream(PROMPT, max_tokens=40, temperature=0, ignore_eos=True))
    full = "".join(pieces)
    # A stop string made of the tail of one piece and the head of the next.
    k = next(i for i in range(1, len(pieces) - 1)
             if len(pieces[i]) >= 2 and len(pieces[i + 1]) >= 2 and pieces[i].strip())
    stop = pieces[k][-2:] + pieces[k + 1][:2]
    expected = full[:full.index(stop)]

    stream = engine.stream(PROMPT, max_tokens=40, temperature=0, ignore_eos=True, stop=[stop])
    got = list(stream)
    assert "".join(got) == expected
    assert stream.completion().finish_reason == "stop"


def test_engine_emits_whole_characters_for_cjk_and_emoji(engine):
    prompt = "English: I love you. 中文: 我爱你。\nEnglish: Good morning. 中文:"
    stream = engine.stream(prompt, max_tokens=24, temperature=0, ignore_eos=True)
    pieces = list(stream)
    text = "".join(pieces)
    assert any(ord(ch) > 0x2E80 for ch in text), text
    assert "\ufffd" not in text

    emoji = engine.stream("Emoji for happy: 😀, sad: 😢, love:", max_tokens=12, temperature=0,
                          ignore_eos=True)
    emoji_text = "".join(emoji)
    assert "\ufffd" not in emoji_text
