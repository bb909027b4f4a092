"""IVR prompts: the packaged catalog (every built-in prompt in all 11 languages, at a telephone level), the
render pipeline (resampling without aliasing, trimming, levelling, A-law, music on hold, determinism), and
the catalog's layering, fallback, name checks and atomic install of pushed prompts."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import durable
from appliance.ivr import render_prompts as render
from appliance.ivr.actions import BUILTIN_PROMPTS, MUSIC_ON_HOLD
from appliance.ivr.errors import IvrError
from appliance.ivr.prompts import (
    MAX_ALAW_BYTES,
    BadPromptAudio,
    BadPromptName,
    PromptCatalog,
    default_dirs,
    install_prompt,
    to_prompt_audio,
    wav_to_alaw,
)
from appliance.media import g711

PROFILE = settings(
    max_examples=int(os.environ.get("APPLIANCE_FUZZ_EXAMPLES", "80")),
    derandomize="APPLIANCE_FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
LANGUAGES = frozenset({"en", "es", "pt", "fr", "de", "ar", "zh", "ja", "hi", "id", "tr"})
PACKAGED = default_dirs()[0]
ALAW_LINEAR = np.array(g711.alaw_decode(bytes(range(256))), dtype=np.float64)
ALAW_CLIP = {0x2A, 0xAA}  # the codes of the top A-law step, ±32256: what clipping looks like
HAVE_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng is not installed")


def decode(data: bytes) -> np.ndarray:
    return ALAW_LINEAR[np.frombuffer(data, dtype=np.uint8)]


def dbfs_rms(samples: np.ndarray) -> float:
    return 20 * math.log10(math.sqrt(float((samples**2).mean())) / 32768)


def tone(freq: float, seconds: float, rate: int, amplitude: float = 10000.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(round(seconds * rate)) / rate)


def wav(body: bytes, *, tag: int = 1, channels: int = 1, rate: int = 8000, bits: int = 16) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


# --- the packaged catalog -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packaged() -> PromptCatalog:
    if not any(PACKAGED.glob("*/*.alaw")):
        pytest.fail(f"no rendered prompts under {PACKAGED}: run `make prompts`")
    return PromptCatalog(default_dirs(), default_language="en")


@pytest.fixture(scope="module")
def manifest() -> dict[str, object]:
    loaded: dict[str, object] = json.loads((PACKAGED / render.MANIFEST_FILE).read_text(encoding="utf-8"))
    return loaded


def test_every_builtin_prompt_exists_in_all_eleven_languages(packaged: PromptCatalog) -> None:
    assert packaged.languages() == LANGUAGES
    for language in sorted(LANGUAGES):
        assert packaged.names(language) == BUILTIN_PROMPTS | {MUSIC_ON_HOLD}, language
        for name in BUILTIN_PROMPTS:
            assert packaged.has(language, name)
            assert Path(packaged.path(language, name)) == PACKAGED / language / f"{name}.alaw"
        assert Path(packaged.path(language, MUSIC_ON_HOLD)) == PACKAGED / "shared" / "music_on_hold.alaw"


def test_packaged_prompts_have_sane_length_and_telephone_level(packaged: PromptCatalog) -> None:
    for language in sorted(LANGUAGES):
        for name in sorted(BUILTIN_PROMPTS):
            data = Path(packaged.path(language, name)).read_bytes()
            where = f"{language}/{name}"
            assert 0.2 <= len(data) / 8000 <= 15, where
            samples = decode(data)
            assert not ALAW_CLIP & set(data), f"{where} is clipped"
            level = render.active_level_dbfs(samples)
            assert -23.5 <= level <= -20.5, f"{where} at {level:.1f} dBFS"
            # ~100 ms of (near) silence at each end, speech in between
            assert dbfs_rms(samples[:400]) < -45 and dbfs_rms(samples[-400:]) < -45, where
    music = decode(Path(packaged.path("en", MUSIC_ON_HOLD)).read_bytes())
    assert 20 <= music.size / 8000 <= 30
    assert -29 <= render.active_level_dbfs(music) <= -25


def test_packaged_files_match_the_manifest_and_the_texts(manifest: dict[str, object]) -> None:
    with (PACKAGED / render.TEXTS_FILE).open("rb") as file:
        texts = tomllib.load(file)
    files = manifest["files"]
    assert isinstance(files, dict)
    expected = {f"{lang}/{name}.alaw" for lang in LANGUAGES for name in BUILTIN_PROMPTS}
    assert set(files) == expected | {"shared/music_on_hold.alaw"}
    for key, entry in files.items():
        data = (PACKAGED / key).read_bytes()
        assert entry["size"] == len(data), key
        assert entry["sha256"] == render.hashlib.sha256(data).hexdigest(), f"{key} is stale: make prompts"
        if key.startswith("shared/"):
            continue
        language, name = key.removesuffix(".alaw").split("/")
        assert entry["text"] == texts[language]["text"][name]
        assert entry["voice"] == texts[language]["voice"]


def test_texts_cover_exactly_the_builtin_prompts_in_eleven_languages() -> None:
    texts = render.load_texts(PACKAGED / render.TEXTS_FILE)
    assert set(texts) == LANGUAGES
    for entry in texts.values():
        assert set(entry.texts) == BUILTIN_PROMPTS


def test_main_menu_text_speaks_the_default_flows_choices() -> None:
    # texts.toml's main_menu says "1 callback, 2 message, 0 agent, * another language" in every language.
    flow = json.loads((PACKAGED.parent / "flows" / "default.json").read_text(encoding="utf-8"))
    menus = [node for node in flow["nodes"].values() if "main_menu" in node.get("prompts", ())]
    assert len(menus) == 1
    kinds = {key: flow["nodes"][target]["type"] for key, target in menus[0]["choices"].items()}
    assert kinds == {"1": "callback", "2": "voicemail", "0": "transfer", "*": "language_menu"}


@needs_espeak
def test_rendering_again_reproduces_the_packaged_prompts(manifest: dict[str, object]) -> None:
    texts = render.load_texts(PACKAGED / render.TEXTS_FILE)
    files = manifest["files"]
    assert isinstance(files, dict)
    same_engine = manifest["espeak_ng"] == render.espeak_version()
    for language, name in (("en", "goodbye"), ("zh", "digit_5"), ("ar", "press_1")):
        entry = texts[language]
        data = render.render_text(entry.texts[name], entry.voice)
        recorded = files[f"{language}/{name}.alaw"]
        if same_engine:
            assert render.hashlib.sha256(data).hexdigest() == recorded["sha256"], (language, name)
        else:  # another espeak-ng: the same speech within tolerance
            packaged = decode((PACKAGED / language / f"{name}.alaw").read_bytes())
            assert abs(len(data) - packaged.size) <= 0.15 * packaged.size
            level = render.active_level_dbfs(decode(data))
            assert abs(level - render.active_level_dbfs(packaged)) <= 2
    assert render.to_alaw(render.music_on_hold()) == (PACKAGED / "shared" / "music_on_hold.alaw").read_bytes()


@needs_espeak
def test_render_writes_a_language_keeps_others_in_the_manifest_and_drops_stale_files(tmp_path: Path) -> None:
    texts = render.load_texts(PACKAGED / render.TEXTS_FILE)
    (tmp_path / render.MANIFEST_FILE).write_text(json.dumps({"files": {"de/closed.alaw": {"size": 1}}}))
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "retired.alaw").write_bytes(b"\xd5")
    manifest = render.render(tmp_path, texts, ["en"])
    assert not (tmp_path / "en" / "retired.alaw").exists()
    assert {p.stem for p in (tmp_path / "en").glob("*.alaw")} == BUILTIN_PROMPTS
    assert (tmp_path / "shared" / "music_on_hold.alaw").is_file()
    assert "de/closed.alaw" in manifest["files"]
    assert json.loads((tmp_path / render.MANIFEST_FILE).read_text()) == manifest
    assert manifest["files"]["en/press_1.alaw"]["text"] == "press 1"


def test_load_texts_refuses_a_language_missing_a_prompt(tmp_path: Path) -> None:
    lines = [f'{name} = "x"' for name in sorted(BUILTIN_PROMPTS - {"goodbye"})]
    path = tmp_path / "texts.toml"
    path.write_text('[xx]\nvoice = "en"\n[xx.text]\n' + "\n".join(lines) + "\n")
    with pytest.raises(render.RenderError, match="goodbye"):
        render.load_texts(path)
    path.write_text('[xx]\n[xx.text]\ngoodbye = "x"\n')
    with pytest.raises(render.RenderError, match="voice"):
        render.load_texts(path)


def test_render_reports_a_missing_espeak_and_an_unknown_language(tmp_path: Path) -> None:
    with pytest.raises(render.RenderError):
        render.espeak_version("/nonexistent/espeak-ng")
    with pytest.raises(render.RenderError):
        render.speak("hello", "en", program="/nonexistent/espeak-ng")
    if HAVE_ESPEAK:
        assert render.main(["--out", str(tmp_path), "--lang", "xx"]) == 1
        assert not list(tmp_path.iterdir())


# --- signal processing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("in_rate", [22050, 16000, 44100])
def test_resampling_keeps_the_telephone_band_flat(in_rate: int) -> None:
    for freq in (300.0, 1000.0, 2500.0, 3400.0):
        out = render.resample(tone(freq, 1.0, in_rate), in_rate)
        assert out.size == 8000
        gain = dbfs_rms(out[400:-400]) - dbfs_rms(tone(freq, 1.0, 8000))
        assert abs(gain) < 0.1, freq


@pytest.mark.parametrize("in_rate", [22050, 16000, 44100])
def test_resampling_removes_what_would_alias(in_rate: int) -> None:
    # Without a low-pass, a 6 kHz tone read at 8 kHz folds to 2 kHz, squarely in the speech band.
    for freq in (4000.0, 4500.0, 6000.0, 7900.0):
        if freq >= in_rate / 2:
            continue
        out = render.resample(tone(freq, 1.0, in_rate), in_rate)
        assert dbfs_rms(out[400:-400]) - dbfs_rms(tone(freq, 1.0, in_rate)) < -70, freq


def test_resampling_has_unity_gain_at_dc_and_handles_edge_cases() -> None:
    out = render.resample(np.full(22050, 1000.0), 22050)
    assert np.allclose(out[200:-200], 1000.0, atol=1e-6)
    assert render.resample(np.zeros(0), 22050).size == 0
    same = np.arange(10.0)
    assert np.array_equal(render.resample(same, 8000, 8000), same)
    with pytest.raises(ValueError, match="positive"):
        render.resample(same, 0)


def test_trim_leaves_a_tenth_of_a_second_each_side() -> None:
    speech = tone(500, 0.5, 8000)
    padded = np.concatenate([np.zeros(4000), speech, np.zeros(8000)])
    out = render.trim(padded)
    assert out.size == 800 + 4000 + 800
    assert np.array_equal(out[800:4800], speech)
    bare = render.trim(speech)  # no silence at all: digital silence is added
    assert bare.size == 5600 and not bare[:800].any() and not bare[-800:].any()
    assert render.trim(np.zeros(5000)).size == 1600


def over_ceiling_db(samples: np.ndarray) -> float:
    """How far above the ceiling the peak would go at the gain that reaches the target level."""
    gain_db = render.TARGET_DBFS - render.active_level_dbfs(samples)
    return 20 * math.log10(np.abs(samples).max() / 32768) + gain_db - render.PEAK_CEILING_DBFS


def test_normalise_reaches_the_target_level_without_clipping() -> None:
    # Speech-like: bursts of two tones at about -43 dBFS, with one sharp peak a few dB too high for the target
    ceiling = 32768 * 10 ** (render.PEAK_CEILING_DBFS / 20)
    bursts = np.concatenate([tone(300, 0.2, 8000, 300) + tone(1200, 0.2, 8000, 150), np.zeros(800)] * 5)
    bursts[1000] = 4000
    assert 2 < over_ceiling_db(bursts) < render.MAX_LIMITING_DB
    out = render.normalise(bursts)
    assert abs(render.active_level_dbfs(out) - render.TARGET_DBFS) < 0.2
    assert np.abs(out).max() <= ceiling + 1e-6
    # A peak too high by more than the limiter may take off: the level ends short by the difference
    bursts[1000] = 7000
    short = over_ceiling_db(bursts) - render.MAX_LIMITING_DB
    assert short > 1
    out = render.normalise(bursts)
    assert abs(render.active_level_dbfs(out) - (render.TARGET_DBFS - short)) < 0.5  # the spike counts too
    assert np.abs(out).max() <= ceiling + 1e-6
    assert np.array_equal(render.normalise(np.zeros(100)), np.zeros(100))


@PROFILE
@given(st.lists(st.floats(-40000, 40000), min_size=1, max_size=400), st.floats(-12, -0.5))
def test_limiter_never_exceeds_the_ceiling_nor_amplifies(values: list[float], ceiling: float) -> None:
    samples = np.array(values)
    out = render.limit(samples, ceiling)
    assert np.all(np.abs(out) <= 32768 * 10 ** (ceiling / 20) + 1e-6)
    assert np.all(np.abs(out) <= np.abs(samples) + 1e-9)


def test_to_alaw_is_the_g711_encoder_with_rounding_and_clipping() -> None:
    values = np.arange(-32768, 32768, 7, dtype=np.float64)
    assert render.to_alaw(values) == g711.alaw_encode(int(v) for v in values)
    assert render.to_alaw(np.array([1e9, -1e9, 0.4])) == g711.alaw_encode([32767, -32768, 0])


def test_music_on_hold_is_deterministic_gentle_and_loops_without_a_seam() -> None:
    music = render.music_on_hold()
    assert np.array_equal(music, render.music_on_hold())
    assert music.size == 24 * 8000
    assert abs(render.active_level_dbfs(music) - render.MUSIC_DBFS) < 1
    assert np.abs(music).max() < 32768
    steps = np.abs(np.diff(music))
    assert abs(music[0] - music[-1]) <= np.percentile(steps, 99.9)


# --- the catalog ----------------------------------------------------------------------------------------


@pytest.fixture
def layers(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    base, pushed = tmp_path / "base", tmp_path / "pushed"
    for folder, files in {
        base: ["en/hello", "en/goodbye", "de/hello", "shared/music_on_hold"],
        pushed: ["de/goodbye", "en/hello", "fr-CA/hello", "zh-Hant-TW/hello"],
    }.items():
        for file in files:
            (folder / file).parent.mkdir(parents=True, exist_ok=True)
            (folder / f"{file}.alaw").write_bytes(b"\xd5" * 80)
    yield base, pushed


def test_later_folders_override_earlier_ones(layers: tuple[Path, Path]) -> None:
    base, pushed = layers
    catalog = PromptCatalog([base, pushed], default_language="en")
    assert catalog.path("en", "hello") == str(pushed / "en" / "hello.alaw")
    assert catalog.path("de", "hello") == str(base / "de" / "hello.alaw")
    assert catalog.path("de", "goodbye") == str(pushed / "de" / "goodbye.alaw")


def test_fallback_goes_to_shared_then_the_default_language(layers: tuple[Path, Path]) -> None:
    base, pushed = layers
    catalog = PromptCatalog([base, pushed], default_language="en")
    assert catalog.path("fr-CA", "goodbye") == str(base / "en" / "goodbye.alaw")
    assert catalog.path("ja", "music_on_hold") == str(base / "shared" / "music_on_hold.alaw")
    assert not catalog.has("fr-CA", "goodbye")
    assert catalog.has("fr-CA", "hello") and catalog.has("ja", "music_on_hold")
    with pytest.raises(KeyError):
        catalog.path("de", "closed")
    assert catalog.languages() == {"en", "de", "fr-CA", "zh-Hant-TW"}
    assert catalog.path("zh-Hant-TW", "hello") == str(pushed / "zh-Hant-TW" / "hello.alaw")
    assert catalog.names("de") == {"hello", "goodbye", "music_on_hold"}
    assert catalog.names("xx") == {"music_on_hold"}
    assert PromptCatalog([base / "missing"], default_language="en").languages() == frozenset()


@pytest.mark.parametrize(
    "name",
    ["", "../en/hello", "a/b", "Hello", "hello.alaw", "x" * 65, "é", "a b", "hello\x00", "hello\n", ".."],
)
def test_bad_prompt_names_are_refused(layers: tuple[Path, Path], name: str) -> None:
    catalog = PromptCatalog(list(layers), default_language="en")
    for call in (catalog.path, catalog.has):
        with pytest.raises(BadPromptName):
            call("en", name)
    with pytest.raises(BadPromptName):
        install_prompt(layers[1], "en", name, b"\xd5")


@pytest.mark.parametrize(
    "language", ["", "e", "EN", "english", "../en", "en-", "en-x", "en/US", "shared", ".", "zh-Hant-TW-x1"]
)
def test_bad_languages_are_refused(layers: tuple[Path, Path], language: str) -> None:
    catalog = PromptCatalog(list(layers), default_language="en")
    with pytest.raises(BadPromptName):
        catalog.path(language, "hello")
    with pytest.raises(BadPromptName):
        catalog.names(language)
    with pytest.raises(BadPromptName):
        PromptCatalog(list(layers), default_language=language)
    if language != "shared":
        with pytest.raises(BadPromptName):
            install_prompt(layers[1], language, "hello", b"\xd5")


def test_errors_belong_to_the_ivr_tree_with_a_status() -> None:
    assert issubclass(BadPromptName, IvrError) and issubclass(BadPromptAudio, IvrError)
    assert BadPromptName.status == BadPromptAudio.status == 422


# --- installing pushed prompts --------------------------------------------------------------------------


def test_install_stores_raw_alaw_and_the_catalog_serves_it_at_once(layers: tuple[Path, Path]) -> None:
    base, pushed = layers
    catalog = PromptCatalog([base, pushed], default_language="en")
    assert not catalog.has("ja", "closed")
    path = install_prompt(pushed, "ja", "closed", b"\x01\x02\x03")
    assert path == pushed / "ja" / "closed.alaw" and path.read_bytes() == b"\x01\x02\x03"
    assert catalog.path("ja", "closed") == str(path)
    install_prompt(pushed, "ja", "closed", b"\x04")  # replaces
    assert path.read_bytes() == b"\x04"
    install_prompt(pushed, "shared", "jingle", b"\x05")
    assert catalog.has("de", "jingle")
    assert [p.name for p in (pushed / "ja").iterdir()] == ["closed.alaw"]  # no temporary left behind


def test_install_converts_8khz_mono_wav() -> None:
    pcm = [0, 1000, -1000, 32767, -32768, 123]
    assert to_prompt_audio(wav(struct.pack("<6h", *pcm))) == g711.alaw_encode(pcm)
    ulaw = g711.ulaw_encode(pcm)
    assert to_prompt_audio(wav(ulaw, tag=7, bits=8)) == g711.ulaw_to_alaw(ulaw)
    alaw = g711.alaw_encode(pcm)
    assert to_prompt_audio(wav(alaw, tag=6, bits=8)) == alaw
    # WAVE_FORMAT_EXTENSIBLE with the PCM sub-format
    guid = struct.pack("<H", 1) + bytes.fromhex("000000001000800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 8000, 16000, 2, 16, 22, 16, 0) + guid
    body = struct.pack("<6h", *pcm)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST\x03\x00\x00\x00abc\x00"
    chunks += b"data" + struct.pack("<I", len(body)) + body
    extensible = b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks
    assert wav_to_alaw(extensible) == g711.alaw_encode(pcm)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "no audio"),
        (wav(b""), "no audio"),
        (wav(b"\x00\x00" * 10, rate=16000), "8000 Hz mono"),
        (wav(b"\x00\x00" * 10, channels=2), "8000 Hz mono"),
        (wav(b"\x80" * 10, bits=8), "not A-law"),
        (wav(b"\x00" * 10, tag=3, bits=32), "not A-law"),
        (b"RIFF\x00\x00\x00\x00WAVE", "fmt and data"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00", "truncated"),
        (b"\xd5" * (MAX_ALAW_BYTES + 1), "longer than"),
    ],
)
def test_install_refuses_audio_it_cannot_play(tmp_path: Path, data: bytes, reason: str) -> None:
    with pytest.raises(BadPromptAudio, match=reason):
        install_prompt(tmp_path, "en", "closed", data)
    assert not (tmp_path / "en" / "closed.alaw").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_install_is_atomic_when_the_rename_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_prompt(tmp_path, "en", "closed", b"old")

    def failing_replace(src: str, dst: Path) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(durable.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        install_prompt(tmp_path, "en", "closed", b"new")
    assert (tmp_path / "en" / "closed.alaw").read_bytes() == b"old"
    assert [p.name for p in (tmp_path / "en").iterdir()] == ["closed.alaw"]


def test_install_fsyncs_the_file_and_its_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(durable.os, "fsync", recording_fsync)
    install_prompt(tmp_path, "de", "closed", b"\xd5")
    assert synced[0].startswith(str(tmp_path / "de" / ".closed."))  # the data, under its temporary name
    assert synced[1:] == [str(tmp_path / "de"), str(tmp_path)]  # the rename, and the new language folder


VALID_WAV = wav(struct.pack("<4h", 0, 100, -100, 2000))


@PROFILE
@given(
    st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=60).map(lambda tail: b"RIFF\x10\x00\x00\x00WAVE" + tail),
        st.tuples(st.integers(0, len(VALID_WAV) - 1), st.integers(0, 255)).map(
            lambda m: VALID_WAV[: m[0]] + bytes([m[1]]) + VALID_WAV[m[0] + 1 :]
        ),
        st.integers(0, len(VALID_WAV)).map(lambda n: VALID_WAV[:n]),
    )
)
def test_prompt_audio_parsing_is_total(data: bytes) -> None:
    try:
        audio = to_prompt_audio(data)
    except BadPromptAudio:
        return
    assert isinstance(audio, bytes) and 0 < len(audio) <= MAX_ALAW_BYTES
