# SPDX-License-Identifier: MIT
"""The live reference for minibert's tokenizer: Hugging Face tokenizers' Python binding (PyPI `tokenizers`, the Rust
library behind transformers' BertTokenizerFast) and transformers' BertTokenizerFast / BertTokenizer themselves.
Used by tests/test_tokenizer_parity.cpp: one python process per call (a call holds many runs of texts), never one
per text. Results are binary so that 100,000+ encodings load in milliseconds.

  tokenizer_reference.py encode TOKENIZER_JSON INPUT_JSON OUTPUT_BIN
      INPUT_JSON: {"runs": [{"name", "pairs": bool, "texts": [...] | [[a, b], ...],
                             "truncation": null | {"max_length", "strategy", "direction"},
                             "padding": null | {"max_length"?, "pad_to_multiple_of"?, "direction"?},
                             "add_special_tokens": bool, "decode": bool}]}
      strategy: LongestFirst | OnlyFirst | OnlySecond; direction: right | left. padding without max_length pads to
      the longest encoding of the run.
      OUTPUT_BIN (little-endian int32): per run, per text: n (or -1 when HF raised), then n ids, n type ids,
      n attention mask, n special-tokens mask, 2n offsets (begin, end; code points of the input text).
      Texts and pairs go through Tokenizer.encode_batch (the Rust side runs it on its own thread pool), in chunks of
      4096; a run padded to the longest is one batch, since that padding is per batch. When a batch raises (a
      truncation error), its items are encoded one by one to find which, and padding to the longest is then
      HF's own Encoding.pad to the longest of the items that did not raise.
      With "decode": the decoded strings (skip_special_tokens False, then True) go to OUTPUT_BIN + ".decode.json",
      one list per run that asks for them, null for a text that raised.

  tokenizer_reference.py transformers MODEL_DIR INPUT_JSON OUTPUT_BIN
      transformers' tokenizers loaded from a pretrained model's own files, as a user of transformers gets them.
      INPUT_JSON: {"runs": [{"name", "loader", "texts": [...], "max_length", "batch_size", "padding": bool}]}
      loader: "fast" = BertTokenizerFast.from_pretrained(MODEL_DIR) (tokenizer.json + tokenizer_config.json);
              "fast-vocab" = BertTokenizerFast.from_pretrained of a folder holding only MODEL_DIR's vocab.txt,
              tokenizer_config.json and special_tokens_map.json (transformers converts the slow tokenizer);
              "slow" = BertTokenizer.from_pretrained(MODEL_DIR) (vocab.txt + tokenizer_config.json, pure Python).
      Each run calls the tokenizer on lists of batch_size texts with truncation=True, max_length and, when
      "padding", padding="longest" (batch_size 1: one call per text, as a dataset map without batching).
      OUTPUT_BIN: as for encode, but the fast loaders write offsets and "slow" does not (it has no offsets):
      per text n, n ids, n type ids, n attention mask, n special-tokens mask[, 2n offsets].

  tokenizer_reference.py unicode TOKENIZER_JSON OUTPUT_TXT
      Every code point through four BertNormalizer configurations and the BertPreTokenizer; one line per code point
      that some stage changes: "cp clean strip lower full pre" (hex code points joined by '.', '-' for an empty
      result, '=' for unchanged; pre = number of pieces of "a" + c + "b").

  tokenizer_reference.py unicode-tables
      Prints the C++ range tables of include/minibert/tokenizer/unicode_tables.hpp, derived from what the reference
      does (not from a Unicode database).
"""
import array
import json
import os
import shutil
import sys
import tempfile

import tokenizers
from tokenizers import Tokenizer, normalizers, pre_tokenizers

MAX_CP = 0x10FFFF
CHUNK = 4096


def is_surrogate(cp):
    return 0xD800 <= cp <= 0xDFFF


def hexs(s):
    return "-" if not s else ".".join("%x" % ord(c) for c in s)


def bert_normalizers():
    n = normalizers.BertNormalizer
    return {
        "clean": n(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False),
        "strip": n(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False),
        "lower": n(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=True),
        "full": n(clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True),
    }


def write_encoding(out, ids, type_ids, attention_mask, special_tokens_mask, offsets):
    out.append(len(ids))
    out.extend(ids)
    out.extend(type_ids)
    out.extend(attention_mask)
    out.extend(special_tokens_mask)
    if offsets is not None:
        for begin, end in offsets:
            out.append(begin)
            out.append(end)


def flush(out, f):
    if sys.byteorder != "little":
        out.byteswap()
    out.tofile(f)
    del out[:]


# ---------------------------------------------------------------------------------------------------------------
# encode: tokenizers' Tokenizer, texts and pairs through encode_batch

def configure(t, run):
    tr = run.get("truncation")
    if tr:
        strategy = {"LongestFirst": "longest_first", "OnlyFirst": "only_first", "OnlySecond": "only_second"}[
            tr.get("strategy", "LongestFirst")]
        t.enable_truncation(tr["max_length"], strategy=strategy, direction=tr.get("direction", "right"))
    else:
        t.no_truncation()
    p = run.get("padding")
    if p:
        t.enable_padding(direction=p.get("direction", "right"), length=p.get("max_length"),
                         pad_to_multiple_of=p.get("pad_to_multiple_of"))
    else:
        t.no_padding()


def run_encode(tokenizer_json, input_json, output_bin):
    with open(input_json, encoding="utf-8") as f:
        runs = json.load(f)["runs"]
    decoded = []
    with open(output_bin, "wb") as fout:
        for run in runs:
            t = Tokenizer.from_file(tokenizer_json)
            configure(t, run)
            add_special = run.get("add_special_tokens", True) is not False
            items = [tuple(x) for x in run["texts"]] if run.get("pairs") else run["texts"]
            padding = run.get("padding")
            pad_longest = bool(padding) and padding.get("max_length") is None
            chunk = len(items) if pad_longest else CHUNK  # padding to the longest is per batch
            run_decoded = []
            for i in range(0, max(len(items), 1), max(chunk, 1)):
                batch = items[i:i + chunk]
                try:
                    encs = t.encode_batch(batch, add_special_tokens=add_special)
                except Exception:
                    # one item made the batch fail (a truncation error): encode one by one to find which
                    if pad_longest:
                        t.no_padding()
                    encs = []
                    for item in batch:
                        try:
                            encs.append(t.encode(*item, add_special_tokens=add_special) if isinstance(item, tuple)
                                        else t.encode(item, add_special_tokens=add_special))
                        except Exception:
                            encs.append(None)  # the C++ side must throw too
                    if pad_longest:
                        target = max((len(e.ids) for e in encs if e is not None), default=0)
                        m = padding.get("pad_to_multiple_of")
                        if m and target % m:
                            target += m - target % m
                        for e in encs:
                            if e is not None:
                                e.pad(target, direction=padding.get("direction", "right"))
                        configure(t, run)
                out = array.array("i")
                for e in encs:
                    if e is None:
                        out.append(-1)
                        if run.get("decode"):
                            run_decoded.append(None)
                        continue
                    write_encoding(out, e.ids, e.type_ids, e.attention_mask, e.special_tokens_mask, e.offsets)
                    if run.get("decode"):
                        run_decoded.append([t.decode(e.ids, skip_special_tokens=False),
                                            t.decode(e.ids, skip_special_tokens=True)])
                flush(out, fout)
            if run.get("decode"):
                decoded.append(run_decoded)
    if decoded:
        with open(output_bin + ".decode.json", "w", encoding="utf-8") as f:
            json.dump(decoded, f)


# ---------------------------------------------------------------------------------------------------------------
# transformers: BertTokenizerFast / BertTokenizer from a pretrained model's files, as the HF Trainer's users call them

def load_transformers(model_dir, loader, scratch):
    from transformers import BertTokenizer, BertTokenizerFast
    if loader == "fast":
        return BertTokenizerFast.from_pretrained(model_dir)
    if loader == "slow":
        return BertTokenizer.from_pretrained(model_dir)
    if loader == "fast-vocab":
        d = os.path.join(scratch, "vocab_only")
        if not os.path.isdir(d):
            os.makedirs(d)
            for fn in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
                if os.path.exists(os.path.join(model_dir, fn)):
                    shutil.copy(os.path.join(model_dir, fn), d)
        tok = BertTokenizerFast.from_pretrained(d)
        assert not os.path.exists(os.path.join(d, "tokenizer.json"))
        return tok
    raise ValueError("unknown loader " + repr(loader))


def run_transformers(model_dir, input_json, output_bin):
    with open(input_json, encoding="utf-8") as f:
        runs = json.load(f)["runs"]
    scratch = tempfile.mkdtemp(prefix="minibert_tok_tf_")
    try:
        cache = {}
        with open(output_bin, "wb") as fout:
            for run in runs:
                loader = run["loader"]
                if loader not in cache:
                    cache[loader] = load_transformers(model_dir, loader, scratch)
                tok = cache[loader]
                offsets = loader != "slow"
                texts = run["texts"]
                bs = run["batch_size"]
                out = array.array("i")
                for i in range(0, len(texts), bs):
                    batch = texts[i:i + bs]
                    kw = dict(truncation=True, max_length=run["max_length"],
                              padding="longest" if run.get("padding") else False,
                              return_token_type_ids=True, return_attention_mask=True,
                              return_special_tokens_mask=True, return_offsets_mapping=offsets)
                    if bs == 1:
                        r = tok(batch[0], **kw)
                        rows = [{k: r[k] for k in r.keys()}]
                    else:
                        r = tok(batch, **kw)
                        rows = [{k: r[k][j] for k in r.keys()} for j in range(len(batch))]
                    for row in rows:
                        write_encoding(out, row["input_ids"], row["token_type_ids"], row["attention_mask"],
                                       row["special_tokens_mask"], row["offset_mapping"] if offsets else None)
                flush(out, fout)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# unicode: every code point through the normalizer stages and the pre-tokenizer

def run_unicode(output_txt):
    n = bert_normalizers()
    pre = pre_tokenizers.BertPreTokenizer()
    keys = ("clean", "strip", "lower", "full")
    fns = [n[k].normalize_str for k in keys]
    pre_str = pre.pre_tokenize_str
    lines = []
    for cp in range(MAX_CP + 1):
        if is_surrogate(cp):
            continue
        s = chr(cp)
        r = []
        changed = False
        for fn in fns:
            v = fn(s)
            if v == s:
                r.append("=")
            else:
                r.append(hexs(v))
                changed = True
        pieces = len(pre_str("a" + s + "b"))
        if pieces != 1:
            changed = True
        if changed:
            lines.append(" ".join(["%x" % cp] + r + [str(pieces)]))
    with open(output_txt, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# unicode-tables: the C++ range tables, derived from what the reference does

def ranges_of(pred):
    out = []
    start = -1
    for cp in range(MAX_CP + 2):
        yes = cp <= MAX_CP and not is_surrogate(cp) and pred(cp)
        if yes and start < 0:
            start = cp
        # Surrogates never reach the tokenizer (they are invalid UTF-8), so a range may run across them.
        if not yes and start >= 0 and not (is_surrogate(cp) and cp < 0xDFFF):
            out.append((start, cp - 1))
            start = -1
    return out


def print_table(name, comment, ranges):
    items = ["{0x%04X, 0x%04X}" % (a, b) for a, b in ranges]
    rows = ["    " + ", ".join(items[i:i + 6]) + "," for i in range(0, len(items), 6)]
    print("// %s (%d ranges)" % (comment, len(ranges)))
    print("inline constexpr code_point_range %s[] = {" % name)
    print("\n".join(rows))
    print("};")


def run_unicode_tables():
    n = bert_normalizers()
    pre = pre_tokenizers.BertPreTokenizer()
    print_table("hf_removed_by_clean_text", "clean_text drops these: NUL, U+FFFD, and is_other() but \\t \\n \\r",
                ranges_of(lambda cp: n["clean"].normalize_str(chr(cp)) == ""))
    print_table("hf_nonspacing_mark", "strip_accents drops these after NFD: is_mark_nonspacing()",
                ranges_of(lambda cp: n["strip"].normalize_str(chr(cp)) == ""))
    print_table("hf_punctuation", "BertPreTokenizer isolates these: ASCII punctuation or is_punctuation()",
                ranges_of(lambda cp: len(pre.pre_tokenize_str("a" + chr(cp) + "b")) == 3))


# ---------------------------------------------------------------------------------------------------------------

USAGE = """usage: tokenizer_reference.py encode TOKENIZER_JSON INPUT_JSON OUTPUT_BIN
       tokenizer_reference.py transformers MODEL_DIR INPUT_JSON OUTPUT_BIN
       tokenizer_reference.py unicode TOKENIZER_JSON OUTPUT_TXT
       tokenizer_reference.py unicode-tables
       tokenizer_reference.py version"""


def main(argv):
    mode, args = (argv[0], argv[1:]) if argv else ("", [])
    if mode == "encode" and len(args) == 3:
        return run_encode(*args)
    if mode == "transformers" and len(args) == 3:
        return run_transformers(*args)
    if mode == "unicode" and len(args) == 2:
        return run_unicode(args[1])
    if mode == "unicode-tables" and not args:
        return run_unicode_tables()
    if mode == "version" and not args:
        import transformers
        print("tokenizers %s, transformers %s" % (tokenizers.__version__, transformers.__version__))
        return None
    print(USAGE, file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
