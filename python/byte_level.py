"""What the tiny-model scripts (make_tiny_vlm.py, make_tiny_whisper.py, make_tiny_tts.py) share: the
GPT-2 / Qwen / Whisper byte-level alphabet their locally built tokenizers use."""


def bytes_to_unicode() -> dict[int, str]:
    """Each byte value -> the printable character byte-level BPE writes it as."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}
