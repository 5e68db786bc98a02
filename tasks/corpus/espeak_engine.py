"""One espeak-ng synthesis through libespeak-ng, reporting every phoneme with its sample position.

Standard library only, so `espeak_timing` can run this file as a fresh interpreter per utterance
(`python -I -S espeak_engine.py`, a JSON request on stdin, a JSON reply on stdout): the library keeps
state between syntheses, and only the first one in a process is bit-identical to `espeak-ng -w`.

Constants and the event layout are those of espeak-ng's `speak_lib.h` (API revision 12, as in
Debian 12's libespeak-ng1 1.51); the synthesis flags are the ones the `espeak-ng` program passes.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import sys

LIBRARY = "libespeak-ng.so.1"  # soname of Debian's libespeak-ng1, a dependency of the espeak-ng package
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
EVENT_LIST_TERMINATED, EVENT_PHONEME = 0, 7
RATE, PITCH = 1, 3  # espeak_PARAMETER: words per minute, 0..99
CHARS_AUTO, PHONEMES, ENDPAUSE = 0, 0x100, 0x1000
CLI_SYNTH_FLAGS = CHARS_AUTO | PHONEMES | ENDPAUSE  # what espeak-ng's main() passes to espeak_Synth
POS_CHARACTER = 1
ERRORS = {-1: "internal error", 1: "buffer full", 2: "not found"}


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # where in the text the phoneme's word starts (1-based)
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # samples since the start of the synthesis, at the library's rate
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def synthesize(voice: str, speed: int, pitch: int, text: str) -> dict:
    """Speak `text` once; returns `sample_rate` (Hz), `samples` (audio length), `audio_sha1` (of the 16-bit PCM)
    and `phonemes`: [mnemonic, first sample, text position] in order. Raises RuntimeError on a library error,
    e.g. an unknown voice. Call at most once per process (see the module docstring)."""
    lib = ctypes.CDLL(LIBRARY)
    sample_rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, INITIALIZE_PHONEME_EVENTS)
    if sample_rate <= 0:
        raise RuntimeError("espeak_Initialize failed: is espeak-ng-data installed?")
    audio, phonemes = hashlib.sha1(), []
    samples = 0

    def on_audio(wav, count, events) -> int:
        nonlocal samples
        if wav and count > 0:
            audio.update(ctypes.string_at(wav, count * ctypes.sizeof(ctypes.c_short)))
            samples += count
        for event in _events(events):
            if event.type == EVENT_PHONEME:
                phonemes.append([event.id.string.decode("ascii"), event.sample, event.text_position])
        return 0

    callback = _Callback(on_audio)  # kept referenced until synthesis ends
    lib.espeak_SetSynthCallback(callback)
    _set_voice(lib, voice)
    _check(lib.espeak_SetParameter(RATE, speed, 0), f"rate {speed}")
    _check(lib.espeak_SetParameter(PITCH, pitch, 0), f"pitch {pitch}")
    encoded = text.encode()
    _check(lib.espeak_Synth(encoded, len(encoded) + 1, 0, POS_CHARACTER, 0, CLI_SYNTH_FLAGS, None, None), "synth")
    _check(lib.espeak_Synchronize(), "synchronize")
    return {"sample_rate": sample_rate, "samples": samples, "audio_sha1": audio.hexdigest(), "phonemes": phonemes}


def _set_voice(lib: ctypes.CDLL, voice: str) -> None:
    """As the espeak-ng program does: by voice file name ("en-us"), else as a language ("en-gb+m5")."""
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        _check(lib.espeak_SetVoiceByProperties(ctypes.byref(_Voice(languages=voice.encode()))), f"voice {voice!r}")


def _events(events):
    index = 0
    while events[index].type != EVENT_LIST_TERMINATED:
        yield events[index]
        index += 1


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"libespeak-ng: {what}: {ERRORS.get(status, f'error {status}')}")


def main() -> int:
    """Read {voice, speed, pitch, text} as JSON on stdin; write the synthesis or {"error": ...} on stdout."""
    request = json.load(sys.stdin)
    try:
        reply = synthesize(request["voice"], request["speed"], request["pitch"], request["text"])
    except RuntimeError as error:
        reply = {"error": str(error)}
    json.dump(reply, sys.stdout)
    return 0 if "error" not in reply else 1


if __name__ == "__main__":
    sys.exit(main())
