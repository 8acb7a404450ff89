# SPDX-License-Identifier: MIT
"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/) and the reproducers of every defect found so
far (tests/fuzz/regressions/<target>/), from the test fixtures: torch.save, the safetensors reference writer,
transformers' BertConfig, HF tokenizers. Nothing is copied from ../shared. Rerun after changing it (the zip files carry
timestamps, so a rerun rewrites them with new bytes):

    .venv/bin/python tests/fuzz/make_corpus.py
"""
import collections
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile

import torch
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from transformers import BertConfig

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "python"))
import safetensors_reference  # noqa: E402
import torch_fixtures  # noqa: E402

CORPUS = os.path.join(here, "corpus")
REGRESSIONS = os.path.join(here, "regressions")


def put(root, target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def seed(target, name, data):
    put(CORPUS, target, name, data)


def regression(target, name, data):
    put(REGRESSIONS, target, name, data)


def deep_json(levels):
    return "[" * levels + "]" * levels


# --- checkpoints ---------------------------------------------------------------------------------------------------

def safetensors_seeds():
    g = torch.Generator().manual_seed(7)
    s = safetensors_reference.serialize
    seed("safetensors", "dtypes.safetensors", s({
        "f32": torch.randn(2, 3, generator=g), "f16": torch.randn(3, generator=g).half(),
        "bf16": torch.randn(2, generator=g).bfloat16(), "f64": torch.randn(2, generator=g).double(),
        "i64": torch.arange(3), "i32": torch.arange(2, dtype=torch.int32), "i16": torch.arange(2, dtype=torch.int16),
        "i8": torch.arange(2, dtype=torch.int8), "u8": torch.arange(2, dtype=torch.uint8),
        "b": torch.tensor([True, False])}, {"format": "pt"}))
    seed("safetensors", "scalar_and_empty.safetensors", s({"scalar": torch.tensor(1.5), "empty": torch.zeros(0, 4)}))
    seed("safetensors", "bert_names.safetensors", s({
        "bert.embeddings.word_embeddings.weight": torch.randn(4, 2, generator=g),
        "bert.embeddings.LayerNorm.gamma": torch.ones(2), "classifier.bias": torch.zeros(2)}))
    seed("safetensors", "no_tensors.safetensors", s({}, {"note": "metadata only"}))
    # a shape whose message dumps deeply nested JSON: the stack overflow found by the first fuzzing pass
    header = ('{"t":{"dtype":"F32","shape":' + deep_json(100_000) + ',"data_offsets":[0,0]}}').encode()
    regression("safetensors", "deep_shape.safetensors", len(header).to_bytes(8, "little") + header)


def torch_seeds():
    with tempfile.TemporaryDirectory() as out:
        torch_fixtures.main(out)
        for name in ["pytorch_model.bin", "zip64.bin", "big_endian.bin", "not_a_state_dict.bin", "compressed.bin",
                     "forbidden_global.bin"]:
            with open(os.path.join(out, name), "rb") as f:
                data = f.read()
            seed("torch_checkpoint", name, data)
            seed("zip", name, data)
        with zipfile.ZipFile(os.path.join(out, "pytorch_model.bin")) as z:
            seed("pickle", "state_dict.pkl", z.read("pytorch_model/data.pkl"))
        with open(os.path.join(out, "legacy.bin"), "rb") as f:
            seed("torch_checkpoint", "legacy.bin", f.read())
        # the out-of-bounds read found by the first fuzzing pass: 2^62 + 1 elements of 4 bytes wrap to 4
        with open(os.path.join(out, "huge_storage.bin"), "rb") as f:
            regression("torch_checkpoint", "huge_storage.bin", f.read())
    buf = io.BytesIO()
    torch.save(collections.OrderedDict([("w", torch.arange(4.0).reshape(2, 2).t())]), buf)
    seed("torch_checkpoint", "transposed_view.bin", buf.getvalue())
    for proto in (2, 4):
        seed("pickle", f"plain_protocol{proto}.pkl", __import__("pickle").dumps(
            collections.OrderedDict([("a", (1, 2.5, -3)), ("b", [True, None, "x" * 3])]), protocol=proto))


# --- JSON and text files ---------------------------------------------------------------------------------------------

def config_seeds():
    tiny = dict(vocab_size=99, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                max_position_embeddings=32)
    seed("config", "tiny.json", BertConfig(**tiny).to_json_string())
    seed("config", "labels.json", BertConfig(**tiny, id2label={0: "neg", 1: "neutral", 2: "pos"},
                                             label2id={"neg": 0, "neutral": 1, "pos": 2},
                                             problem_type="single_label_classification",
                                             architectures=["BertForSequenceClassification"]).to_json_string())
    seed("config", "gelu_new.json", BertConfig(**tiny, hidden_act="gelu_new", classifier_dropout=0.2,
                                               layer_norm_eps=1e-6).to_json_string())
    regression("config", "deep_unknown_field.json", '{"vocab_size": 99, "x": ' + deep_json(100_000) + "}")
    regression("config", "terabyte_sizes.json", json.dumps(dict(tiny, vocab_size=2**31 - 1, hidden_size=2**20)))


def tiny_tokenizer(lowercase=True, strip_accents=None):
    toks = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "hello", "world", ",", "!", ".", "na", "##ive", "東",
             "京", "é", "##é", "un", "##believ", "##able", "café"] + list("abcdefghijklmnopqrstuvwxyz0123456789") +
            ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"])
    tk = Tokenizer(WordPiece({t: i for i, t in enumerate(toks)}, unk_token="[UNK]", max_input_chars_per_word=100))
    tk.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                               strip_accents=strip_accents, lowercase=lowercase)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                      special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tk.decoder = decoders.WordPiece(prefix="##")
    tk.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tk.add_tokens([AddedToken("<lstrip>", lstrip=True), AddedToken("<rstrip>", rstrip=True),
                   AddedToken("word", single_word=True), AddedToken("Ünïcode", normalized=False),
                   AddedToken("naïve", normalized=True)])
    return tk, toks


def tokenizer_seeds():
    tk, toks = tiny_tokenizer()
    tk.enable_truncation(max_length=64)
    tk.enable_padding(pad_id=0, pad_token="[PAD]", pad_to_multiple_of=8)
    seed("tokenizer_json", "tiny.json", tk.to_str())  # also the fixed tokenizer of fuzz_tokenize
    tk.no_padding()
    tk.no_truncation()
    seed("tokenizer_json", "no_padding.json", tk.to_str())
    tk2, _ = tiny_tokenizer(lowercase=False, strip_accents=True)
    tk2.enable_padding(pad_id=0, pad_token="[PAD]", length=16, direction="left")
    tk2.enable_truncation(max_length=16, strategy="only_second", direction="left")
    seed("tokenizer_json", "cased_fixed_left.json", tk2.to_str())
    seed("vocab", "vocab.txt", "\n".join(toks) + "\n")
    seed("vocab", "crlf.txt", "\r\n".join(toks[:12]) + "\r\n")
    # the four tokenizer.json defects of the first fuzzing pass
    j = json.loads(tk.to_str())
    j["truncation"] = {"direction": "Right", "max_length": 1e999, "strategy": "LongestFirst", "stride": 0}
    regression("tokenizer_json", "number_overflow.json", json.dumps(j).replace('"max_length": Infinity', '"max_length": 1e999'))
    j = json.loads(tk.to_str())
    j["added_tokens"] = {"not": "an array"}
    regression("tokenizer_json", "type_error.json", json.dumps(j))
    j = json.loads(tk.to_str())
    j["padding"] = {"strategy": {"Fixed": 2**31 - 1}, "direction": "Right", "pad_to_multiple_of": None,
                    "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}
    regression("tokenizer_json", "huge_fixed_padding.json", json.dumps(j))
    j["padding"] = {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": 2**31 - 1,
                    "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}
    regression("tokenizer_json", "huge_pad_to_multiple_of.json", json.dumps(j))
    # found by the first long campaign: the WordPiece model's own error (unk_token not in the vocabulary) named no file
    regression("tokenizer_json", "unk_not_in_vocab.json", json.dumps(
        {"model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"a": 0, "##b": 1}},
         "pre_tokenizer": {"type": "BertPreTokenizer"}}))


def text_seeds():
    texts = {
        "ascii.txt": "Hello, world! The unbelievable cafe.",
        "accents.txt": "Café naïve ÉCOLE résumé Ünïcode",
        "cjk_emoji.txt": "東京 is 日本's capital 😀👍🏽 ﬁ",
        "added_tokens.txt": "a <lstrip> b   <rstrip>  c word wordy Ünïcode naïve [CLS][MASK]",
        "controls.txt": "tab\there\x00nul\x7f del \u200b zero-width \u0301 combining \u00ad soft hyphen",
        "long_word.txt": "x" * 300 + " " + "ab" * 60,
        "pair.txt": "first sentence\xffsecond one",  # fuzz_tokenize splits at the first 0xFF byte
    }
    for name, t in texts.items():
        seed("tokenize", name, t.encode("utf-8") if "\xff" not in t else t.encode("latin-1", "replace"))
    seed("tokenize", "invalid_utf8.bin", b"ok \xc3\x28 \xe2\x82 \xf0\x9f\x98 \xed\xa0\x80 \xc0\xaf end")


def dataset_seeds():
    # fuzz_dataset: the first byte picks the format and options, the rest is the file
    files = {
        "tsv": (0, "sentence\tlabel\nthe film was great\t1\nboring\t0\n"),
        "csv": (1, 'text,label\n"quoted, with comma",pos\n"multi\nline ""quote""",neg\nplain,neu\n'),
        "jsonl": (2, '{"text": "good", "label": 1}\n\n{"text": "bad", "label": 0, "extra": [1, {"a": null}]}\n'),
        "jsonl_names": (2, '{"text": "good", "label": "positive"}\n{"text": "bad", "label": "negative"}\n'),
        "text_at_label": (3, "Profit rose 5% .@positive\nLoss widened .@negative\n"),
        "csv_pair_crlf": (1 | 4, "sentence1,sentence2,label\r\na,b,0\r\nc,d,1\r\n"),
    }
    for name, (opts, text) in files.items():
        seed("dataset", name, bytes([opts]) + text.encode())
    regression("dataset", "deep_label.jsonl", b"\x02" + ('{"text": "t", "label": ' + deep_json(100_000) + "}\n").encode())
    regression("dataset", "number_overflow.jsonl", b"\x02" + b'{"text": "t", "label": 1e999}\n')


def main():
    for d in (CORPUS, REGRESSIONS):
        shutil.rmtree(d, ignore_errors=True)
    safetensors_seeds()
    torch_seeds()
    config_seeds()
    tokenizer_seeds()
    text_seeds()
    dataset_seeds()
    for d in (CORPUS, REGRESSIONS):
        for t in sorted(os.listdir(d)):
            files = os.listdir(os.path.join(d, t))
            size = sum(os.path.getsize(os.path.join(d, t, f)) for f in files)
            print(f"{os.path.relpath(os.path.join(d, t), here)}: {len(files)} files, {size} bytes")


if __name__ == "__main__":
    main()
