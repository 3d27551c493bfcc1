"""JavaScript BPE tokenizer (serving/js/tokenizer.mjs): the same token ids as Hugging Face `tokenizers` (the
Rust library the Python side uses) for the Llama-2 tokenizer the embedding family ships, on every distinct
AlpacaEval prompt, thousands of RouteLLM MMLU prompts, hostile and random text; and on small synthetic BPE
models built to exercise the merge queue's corner cases (many pairs merging into one token, stale entries,
unknown characters fused or not, byte fallback)."""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT

tokenizers = pytest.importorskip("tokenizers")

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None, reason="node (Node.js >= 20) is not on PATH: the JavaScript tokenizer cannot be run"
)
JS = ROOT / "serving" / "js"
SAMPLE = ROOT / "data" / "sample"

# Batch runner: stdin line 1 = the path of a tokenizer JSON, then one JSON text per line; stdout = JSON list of id
# lists (or of error messages, for texts the config cannot encode). argv[1] == "fixed": also encode toWellFormed().
RUNNER = """
import {readFileSync} from "node:fs";
import {LlamaTokenizer} from "./tokenizer.mjs";
const [path, ...lines] = readFileSync(0, "utf8").split("\\n");
const tok = LlamaTokenizer.fromJSON(JSON.parse(readFileSync(path, "utf8")));
const out = [];
for (const line of lines) {
  if (line === "") continue;
  const text = JSON.parse(line);
  try { out.push(Array.from(tok.encode(text))); } catch (e) { out.push(e.message); }
}
process.stdout.write(JSON.stringify(out));
"""


def _package_config() -> dict:
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the wordllama package is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "tokenizers" / "l2_supercat_tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["added_tokens"] = []  # as the embedding family uses it: "<s>" in a prompt is text
    return config


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """(path of the tokenizer JSON, the HF reference tokenizer built from the very same bytes)."""
    text = json.dumps(_package_config(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    path.write_text(text, encoding="utf-8")
    return path, tokenizers.Tokenizer.from_str(text)


def js_encode(config: Path, texts: list[str]) -> list:
    """Token ids per text from the JS tokenizer, one node process for the whole batch."""
    stdin = (
        str(config) + "\n" + "".join(json.dumps(t, ensure_ascii=True) + "\n" for t in texts)
    )  # ASCII: lone surrogates survive
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", RUNNER.replace('"./', '"' + JS.as_uri() + "/")],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert len(out) == len(texts)
    return out


def well_formed(s: str) -> str:
    """The Python side's fix for lone surrogates (JS: String.prototype.toWellFormed)."""
    return s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def assert_same_ids(config: Path, reference, texts: list[str]) -> None:
    want = [reference.encode(well_formed(t), add_special_tokens=False).ids for t in texts]
    got = js_encode(config, texts)
    bad = [i for i, (a, b) in enumerate(zip(want, got, strict=True)) if a != b]
    assert not bad, (
        f"{len(bad)} of {len(texts)} texts differ; first {texts[bad[0]][:200]!r}: python {want[bad[0]][:40]}, js {got[bad[0]] if isinstance(got[bad[0]], str) else got[bad[0]][:40]}"
    )


def _distinct_prompts(name: str) -> list[str]:
    path = SAMPLE / name
    if not path.exists():
        pytest.skip(f"{path} is not there")
    prompts = pd.read_parquet(path, columns=["prompt"])["prompt"].dropna()
    return sorted(set(prompts.astype(str)))


def test_every_alpaca_eval_prompt(llama) -> None:
    prompts = _distinct_prompts("alpaca_eval.parquet")
    assert len(prompts) == 805
    assert_same_ids(*llama, prompts)


def test_routellm_mmlu_prompts(llama) -> None:
    prompts = _distinct_prompts("routellm_mmlu.parquet")
    sample = random.Random(11).sample(prompts, min(4000, len(prompts)))
    assert len(sample) >= min(4000, len(prompts)) and len(sample) >= 1000
    assert_same_ids(*llama, sample)


HOSTILE = [
    "",
    " ",
    "  ",
    "  leading spaces",
    "trailing spaces   ",
    "tabs\tand\nnewlines\r\n",
    "\n",
    "\r\n\r\n\t\t\x0b\x0c",
    "▁",
    "▁▁ ▁ already▁marked",
    "😀🎉 why is the sky blue? 🤔",
    "👩‍👩‍👧‍👦 family emoji (ZWJ sequence), flags 🇫🇷🇯🇵, skin tone 👍🏽, keycap 1️⃣",
    "什么是机器学习？請用繁體中文回答。日本語のテキスト、한국어 텍스트",
    "𠀀𠀁𪜀 astral CJK ideographs",
    "مرحبا بالعالم كيف حالك؟ \u202eRTL override\u202c שלום עולם",
    "cafe\u0301 re\u0301sume\u0301 n\u0303 Z\u0351\u0360\u0362a\u0315\u035fl\u0336\u0327g\u0335o\u0358",  # combining marks, zalgo
    "<s></s><unk>",
    "<s> hello </s> <unk> <0x0A> <0x41>",
    "\ufffd replacement \ufffd\ufffd",
    "a" * 5000,
    " " * 3000,
    "ab" * 2000,
    "the " * 1500,
    "\n" * 1000,
    "1234567890" * 300,
    "😀" * 1000,
    "\x00NUL\x01\x02 control \x1f\x7f chars and DEL",
    "\u0080\u0085\u00a0\u00ad\u200b\u200c\u200d\u2028\u2029\ufeff\ufffe\uffff",  # C1, nbsp, soft hyphen, zero widths, BOM, noncharacters
    "\U0010ffff\U000e0001\U000f0000 plane-15/16 private use and tags",
    "İstanbul ΣΟΦΟΣ ß ẞ ǅ K Å ﬁ ＡＢＣ１２３ ①②③ ㍻",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐛𝐨𝐥𝐝 𝟙𝟚𝟛",
    "```python\nimport os\nclass A:\n    def f(self):\n        return {'a': [1, 2]}\n```",
    "Solve 3x + 4 = 19 and \\frac{1}{2} \\times \\sqrt{x}",
    "Ᵽ Ⱡ ꝏ ꜳ Ꞁ ʬ ɮ ɶ ᴂ ᴔ",  # Latin letters the Llama vocab does not hold: byte fallback
    "ॐ ༀ ꧁꧂ ꙮ 𓀀 𓂀 𒀀 ᚠᚢᚦ ᠠᠡ ⵣ ꓮ 𐤀",  # rare scripts: byte fallback, 3- and 4-byte sequences
]


def test_hostile_texts(llama) -> None:
    assert_same_ids(*llama, HOSTILE)


def _random_text(rng: random.Random, n: int) -> str:
    """n code points: anywhere in Unicode but surrogates, weighted towards ASCII, spaces and the BMP."""
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.3:
            cp = rng.randrange(0x20, 0x7F)
        elif r < 0.4:
            cp = rng.choice([0x20, 0x20, 0x20, 0x0A, 0x09, 0x2581])
        elif r < 0.8:
            cp = rng.randrange(0x80, 0x10000)
        else:
            cp = rng.randrange(0x10000, 0x110000)
        if 0xD800 <= cp <= 0xDFFF:
            cp = 0xFFFD
        out.append(chr(cp))
    return "".join(out)


def test_random_code_points(llama) -> None:
    rng = random.Random(20240501)
    texts = [_random_text(rng, 4096)] + [_random_text(rng, rng.randrange(1, 300)) for _ in range(300)]
    assert_same_ids(*llama, texts)


def test_random_vocabulary_soup(llama) -> None:
    """Texts glued from random vocabulary pieces and a small alphabet: many competing merges of equal tokens."""
    path, reference = llama
    vocab = [t for t in json.loads(path.read_text(encoding="utf-8"))["model"]["vocab"] if not t.startswith("<")]
    rng = random.Random(5)
    texts = [
        "".join(rng.choice(vocab) for _ in range(rng.randrange(1, 60))).replace("▁", rng.choice([" ", "▁"]))
        for _ in range(1500)
    ]
    texts += ["".join(rng.choice("aeinorst ▁") for _ in range(rng.randrange(1, 80))) for _ in range(1500)]
    assert_same_ids(path, reference, texts)


def test_lone_surrogates_become_replacement_characters(llama) -> None:
    """JS strings may hold lone surrogates; Python fixes them to U+FFFD before tokenising, JS encode() does the
    same (toWellFormed), and a split surrogate pair in Python is the joined character in both."""
    path, reference = llama
    texts = [
        "\ud800",
        "lone high \ud800 and low \udc00 surrogates",
        "\udc00\ud800",
        "a\ud83d",
        "\ud83d\ude00 joined pair",
        "\ud83d" + "\ude00",
        "x\udfff\ud800y" * 50,
    ]
    assert_same_ids(path, reference, texts)
    fixed = js_encode(path, [well_formed(t) for t in texts])
    assert fixed == js_encode(path, texts)
    assert well_formed("\ud800") == "\ufffd" and well_formed("\ud83d" + "\ude00") == "😀"


def test_the_runner_refuses_unsupported_configs(llama, tmp_path: Path) -> None:
    """Added tokens, a pre-tokenizer, a regex Replace or dropout change the ids: refused, not approximated."""
    config = json.loads(llama[0].read_text(encoding="utf-8"))
    changes = {
        "added_tokens": lambda c: c.update(added_tokens=[{"id": 1, "content": "<s>", "special": True}]),
        "pre_tokenizer": lambda c: c.update(pre_tokenizer={"type": "Whitespace"}),
        "Replace": lambda c: c["normalizer"]["normalizers"].__setitem__(
            1, {"type": "Replace", "pattern": {"Regex": " "}, "content": "▁"}
        ),
        "dropout": lambda c: c["model"].update(dropout=0.1),
        "not in the vocab": lambda c: c["model"]["merges"].append("zz▁ qq"),
        "one form": lambda c: c["model"]["merges"].append(["▁", "t"]),
    }
    script = (
        'import {readFileSync} from "node:fs"; import {LlamaTokenizer} from "./tokenizer.mjs";'
        ' try { LlamaTokenizer.fromJSON(JSON.parse(readFileSync(process.argv[1], "utf8"))); console.log("ok"); } catch (e) { console.log(e.name + ": " + e.message); }'
    )
    script = script.replace('"./', '"' + JS.as_uri() + "/")
    for needle, change in changes.items():
        c = json.loads(json.dumps(config))
        change(c)
        p = tmp_path / "bad.json"
        p.write_text(json.dumps(c), encoding="utf-8")
        out = subprocess.run(
            [NODE, "--input-type=module", "-e", script, str(p)], capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
        assert out.startswith("TokenizerError: tokenizer: ") and needle in out, out


# ------------------------------------------------------------------------- synthetic BPE models


def _toy_config(
    rng: random.Random, *, byte_fallback: bool, fuse_unk: bool, unk: bool, ignore_merges: bool = False
) -> dict:
    """A tiny BPE over {a, b, c, ▁}: every string of length <= 4 is a token, merges are a random subset of all
    pairs (so many different pairs merge into the same token and stale queue entries revalidate)."""
    alphabet = "abc▁"
    tokens = [""]
    vocab_list: list[str] = []
    for _ in range(4):
        tokens = [t + ch for t in tokens for ch in alphabet]
        vocab_list += tokens
    specials = ["<unk>"] + ([f"<0x{b:02X}>" for b in b"d\xc3\xa9"] if byte_fallback else [])  # 'd' and 'é' by bytes
    vocab = {t: i for i, t in enumerate(specials + vocab_list)}
    pairs = [(x, y) for x in vocab_list for y in vocab_list if len(x) + len(y) <= 4]
    merges = rng.sample(pairs, len(pairs) // 2)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Prepend", "prepend": "▁"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
            ],
        },
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": None,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>" if unk else None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": fuse_unk,
            "byte_fallback": byte_fallback,
            "ignore_merges": ignore_merges,
            "vocab": vocab,
            "merges": [f"{x} {y}" for x, y in merges]
            if rng.random() < 0.5
            else [[x, y] for x, y in merges],  # HF: one form or the other
        },
    }


@pytest.mark.parametrize(
    ("byte_fallback", "fuse_unk", "unk", "ignore_merges"),
    [
        (False, False, True, False),
        (False, True, True, False),
        (True, True, True, False),
        (True, False, True, False),
        (False, False, False, False),
        (True, True, True, True),
    ],
)
def test_synthetic_bpe_models(
    tmp_path: Path, byte_fallback: bool, fuse_unk: bool, unk: bool, ignore_merges: bool
) -> None:
    for seed in range(3):
        rng = random.Random(seed * 31 + byte_fallback * 7 + fuse_unk * 3 + unk + ignore_merges * 101)
        config = _toy_config(rng, byte_fallback=byte_fallback, fuse_unk=fuse_unk, unk=unk, ignore_merges=ignore_merges)
        path = tmp_path / f"toy{seed}.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        reference = tokenizers.Tokenizer.from_str(path.read_text(encoding="utf-8"))
        texts = ["", " ", "ddd", "déjà", "xyz", "ab", "a b", "abc"] + [
            "".join(rng.choice("abcabcabc ▁dé") for _ in range(rng.randrange(1, 40))) for _ in range(400)
        ]
        assert_same_ids(path, reference, texts)


# ------------------------------------------------------------------------- the piece memo

PIECES_SCRIPT = (
    'import {readFileSync} from "node:fs"; import {LlamaTokenizer} from "./tokenizer.mjs";'
    ' const t = LlamaTokenizer.fromJSON(JSON.parse(readFileSync(process.argv[1], "utf8")));'
    " console.log(t._pieces === null ? 'whole' : 'pieces');"
)


def _path_taken(config: dict, path: Path) -> str:
    path.write_text(json.dumps(config), encoding="utf-8")
    script = PIECES_SCRIPT.replace('"./', '"' + JS.as_uri() + "/")
    return subprocess.run(
        [NODE, "--input-type=module", "-e", script, str(path)], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()


def test_pieces_are_memoised_only_under_the_proof(llama, tmp_path: Path) -> None:
    """The shipped tokenizer encodes piece by piece (features/embed.py's proof); a merge across a piece cut, another
    normaliser or ignore_merges turn the memo off, and the ids stay the reference's either way."""
    config = json.loads(llama[0].read_text(encoding="utf-8"))
    assert _path_taken(config, tmp_path / "llama.json") == "pieces"
    crossing = json.loads(json.dumps(config))
    vocab = crossing["model"]["vocab"]
    vocab["s▁"] = max(vocab.values()) + 1  # the first merge: "s" + the next word's marker
    crossing["model"]["merges"].insert(0, "s ▁" if isinstance(crossing["model"]["merges"][0], str) else ["s", "▁"])
    path = tmp_path / "crossing.json"
    assert _path_taken(crossing, path) == "whole"
    texts = ["its the end", "cats the dogs", "s the", "this  the", "the"] * 2
    reference = tokenizers.Tokenizer.from_str(path.read_text(encoding="utf-8"))
    assert "s▁" in reference.encode("its the end", add_special_tokens=False).tokens
    assert_same_ids(path, reference, texts)
    other = json.loads(json.dumps(config))
    other["normalizer"]["normalizers"][1]["content"] = "_"
    assert _path_taken(other, tmp_path / "other.json") == "whole"
    assert _path_taken(config | {"model": config["model"] | {"ignore_merges": True}}, tmp_path / "im.json") == "whole"


def test_synthetic_piece_models(tmp_path: Path) -> None:
    """Toy BPE models that pass the proof (all 256 byte tokens, no merge across a piece cut): piece by piece, each
    piece memoised, the same ids as the reference on random texts with runs of spaces and markers, twice over."""
    for seed in range(3):
        rng = random.Random(1000 + seed)
        config = _toy_config(rng, byte_fallback=True, fuse_unk=False, unk=True)
        model = config["model"]
        model["vocab"] |= {f"<0x{b:02X}>": len(model["vocab"]) + i for i, b in enumerate(range(256))}
        merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
        model["merges"] = [f"{a} {b}" for a, b in merges if a.endswith("▁") or not b.startswith("▁")]
        path = tmp_path / f"pieces{seed}.json"
        assert _path_taken(config, path) == "pieces"
        reference = tokenizers.Tokenizer.from_str(path.read_text(encoding="utf-8"))
        texts = ["".join(rng.choice("abcabcabc  ▁▁dé") for _ in range(rng.randrange(1, 40))) for _ in range(300)]
        assert_same_ids(path, reference, texts + texts[::-1])
