// SPDX-License-Identifier: MIT
// The live reference for minibert's tokenizer: Hugging Face tokenizers' official Node binding.
// Used by tests/test_tokenizer_parity.cpp (one node process per call, never one per text).
//
//   node tokenizer_reference.js encode  TOKENIZER_JSON INPUT_JSON OUTPUT_BIN
//       INPUT_JSON: {"runs": [{"name", "pairs": bool, "texts": [...] | [[a, b], ...],
//                              "truncation": null | {"max_length", "strategy", "direction"},
//                              "padding": null | {"max_length"?, "pad_to_multiple_of"?, "direction"?},
//                              "add_special_tokens": bool, "decode": bool}]}
//       OUTPUT_BIN (little-endian int32): per run, per text: n (or -1 when HF threw), then n ids, n type ids,
//       n attention mask, n special-tokens mask, 2n offsets (begin, end; code points of the input text).
//       Single texts go through encodeBatch (chunks of 4096); pairs through encode one by one (this binding's
//       encodeBatch takes no pairs), padded to the longest of the run with HF's own Encoding.pad.
//       With "decode": the decoded strings (skip_special_tokens false, then true) go to OUTPUT_BIN + ".decode.json".
//   node tokenizer_reference.js unicode TOKENIZER_JSON OUTPUT_TXT
//       Every code point through four BertNormalizer configurations and the BertPreTokenizer; one line per
//       code point that some stage changes: "cp clean strip lower full pre" (hex code points joined by '.',
//       '-' for an empty result, '=' for unchanged; pre = number of pieces of "a" + c + "b").
//   node tokenizer_reference.js unicode-tables
//       Prints the C++ range tables of include/minibert/tokenizer/unicode_tables.hpp.
'use strict';
const fs = require('fs');
const path = require('path');

function load_tokenizers() {
  // NODE_PATH may point at tests/node/node_modules; fall back to the copy beside this script.
  try {
    return require('tokenizers');
  } catch (e) {
    return require(path.join(__dirname, 'node', 'node_modules', 'tokenizers'));
  }
}
const tk = load_tokenizers();

const MAX_CP = 0x10ffff;
const is_surrogate = (cp) => cp >= 0xd800 && cp <= 0xdfff;
const hex = (s) => (s.length === 0 ? '-' : Array.from(s).map((c) => c.codePointAt(0).toString(16)).join('.'));

function normalizers() {
  return {
    clean: tk.bertNormalizer({ cleanText: true, handleChineseChars: false, stripAccents: false, lowercase: false }),
    strip: tk.bertNormalizer({ cleanText: false, handleChineseChars: false, stripAccents: true, lowercase: false }),
    lower: tk.bertNormalizer({ cleanText: false, handleChineseChars: false, stripAccents: false, lowercase: true }),
    full: tk.bertNormalizer({ cleanText: true, handleChineseChars: true, stripAccents: true, lowercase: true }),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// encode: single texts through encodeBatch (the Rust side runs it on its own thread pool), pairs one by one

async function run_encode(tokenizer_json, input_json, output_bin) {
  const input = JSON.parse(fs.readFileSync(input_json, 'utf8'));
  const fd = fs.openSync(output_bin, 'w');
  const decoded = [];
  const CHUNK = 4096;
  for (const run of input.runs) {
    const t = tk.Tokenizer.fromFile(tokenizer_json);
    if (run.truncation) {
      const tr = run.truncation;
      t.setTruncation(tr.max_length, { strategy: tr.strategy || 'LongestFirst', direction: tr.direction || 'right' });
    } else {
      t.disableTruncation();
    }
    if (run.padding) {
      const p = run.padding;
      const opts = {};
      if (p.max_length !== undefined) opts.maxLength = p.max_length;
      if (p.pad_to_multiple_of !== undefined) opts.padToMultipleOf = p.pad_to_multiple_of;
      if (p.direction !== undefined) opts.direction = p.direction;
      t.setPadding(opts);
    } else {
      t.disablePadding();
    }
    const options = { addSpecialTokens: run.add_special_tokens !== false };
    // This binding's encodeBatch takes single texts only: pairs go through encode one by one, and padding to the
    // longest of a batch of pairs is HF's own Encoding.pad to that length.
    const pad_pairs_to_longest = run.pairs && run.padding && run.padding.max_length === undefined;
    if (pad_pairs_to_longest) t.disablePadding();
    const encode_one = async (item) => {
      try {
        return Array.isArray(item) ? await t.encode(item[0], item[1], options) : await t.encode(item, null, options);
      } catch (err) {
        return null; // a truncation error: the C++ side must throw too
      }
    };
    const run_decoded = [];
    for (let i = 0; i < run.texts.length; i += CHUNK) {
      const batch = run.texts.slice(i, i + CHUNK);
      let encs = null;
      if (!run.pairs) {
        try {
          // Padding to the longest is per batch, so a padded run must fit in one chunk.
          encs = await t.encodeBatch(batch, options);
        } catch (e) {
          encs = null; // one text made the batch fail (a truncation error): encode one by one to find which
        }
      }
      if (!encs) encs = await Promise.all(batch.map(encode_one));
      if (pad_pairs_to_longest) {
        let target = 0;
        for (const e of encs) if (e) target = Math.max(target, e.getLength());
        const m = run.padding.pad_to_multiple_of;
        if (m && target % m) target += m - (target % m);
        for (const e of encs) if (e) e.pad(target, { direction: run.padding.direction || 'right' });
      }
      const out = [];
      for (const e of encs) {
        if (!e) {
          out.push(-1);
          if (run.decode) run_decoded.push(null);
          continue;
        }
        const ids = e.getIds();
        out.push(ids.length);
        for (const v of ids) out.push(v);
        for (const v of e.getTypeIds()) out.push(v);
        for (const v of e.getAttentionMask()) out.push(v);
        for (const v of e.getSpecialTokensMask()) out.push(v);
        for (const o of e.getOffsets()) out.push(o[0], o[1]);
        if (run.decode) run_decoded.push([await t.decode(ids, false), await t.decode(ids, true)]);
      }
      const buf = Buffer.from(Int32Array.from(out).buffer);
      fs.writeSync(fd, buf);
    }
    if (run.decode) decoded.push(run_decoded);
  }
  fs.closeSync(fd);
  if (decoded.length) fs.writeFileSync(output_bin + '.decode.json', JSON.stringify(decoded));
}

// ---------------------------------------------------------------------------------------------------------------
// unicode: every code point through the normalizer stages and the pre-tokenizer

function run_unicode(output_txt) {
  const n = normalizers();
  const pre = tk.bertPreTokenizer();
  const lines = [];
  for (let cp = 0; cp <= MAX_CP; cp++) {
    if (is_surrogate(cp)) continue;
    const s = String.fromCodePoint(cp);
    const r = {};
    let changed = false;
    for (const k of ['clean', 'strip', 'lower', 'full']) {
      const v = n[k].normalizeString(s);
      r[k] = v === s ? '=' : hex(v);
      if (v !== s) changed = true;
    }
    const pieces = pre.preTokenizeString('a' + s + 'b').length;
    if (pieces !== 1) changed = true;
    if (changed) lines.push([cp.toString(16), r.clean, r.strip, r.lower, r.full, pieces].join(' '));
  }
  fs.writeFileSync(output_txt, lines.join('\n') + '\n');
}

// ---------------------------------------------------------------------------------------------------------------
// unicode-tables: the C++ range tables, derived from what the reference does (not from a Unicode database)

function ranges_of(pred) {
  const out = [];
  let start = -1;
  for (let cp = 0; cp <= MAX_CP + 1; cp++) {
    const yes = cp <= MAX_CP && !is_surrogate(cp) && pred(cp);
    if (yes && start < 0) start = cp;
    // Surrogates never reach the tokenizer (they are invalid UTF-8), so a range may run across them.
    if (!yes && start >= 0 && !(is_surrogate(cp) && cp < 0xdfff)) {
      out.push([start, cp - 1]);
      start = -1;
    }
  }
  return out;
}

function print_table(name, comment, ranges) {
  const h = (v) => '0x' + v.toString(16).toUpperCase().padStart(4, '0');
  const items = ranges.map(([a, b]) => `{${h(a)}, ${h(b)}}`);
  const rows = [];
  for (let i = 0; i < items.length; i += 6) rows.push('    ' + items.slice(i, i + 6).join(', ') + ',');
  console.log(`// ${comment} (${ranges.length} ranges)`);
  console.log(`inline constexpr code_point_range ${name}[] = {`);
  console.log(rows.join('\n'));
  console.log('};');
}

function run_unicode_tables() {
  const n = normalizers();
  const pre = tk.bertPreTokenizer();
  const s = (cp) => String.fromCodePoint(cp);
  print_table('hf_removed_by_clean_text', 'clean_text drops these: NUL, U+FFFD, and is_other() but \\t \\n \\r',
              ranges_of((cp) => n.clean.normalizeString(s(cp)) === ''));
  print_table('hf_nonspacing_mark', 'strip_accents drops these after NFD: is_mark_nonspacing()',
              ranges_of((cp) => n.strip.normalizeString(s(cp)) === ''));
  print_table('hf_punctuation', 'BertPreTokenizer isolates these: ASCII punctuation or is_punctuation()',
              ranges_of((cp) => pre.preTokenizeString('a' + s(cp) + 'b').length === 3));
}

// ---------------------------------------------------------------------------------------------------------------

async function main() {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === 'encode' && args.length === 3) return run_encode(args[0], args[1], args[2]);
  if (mode === 'unicode' && args.length === 2) return run_unicode(args[1]);
  if (mode === 'unicode-tables') return run_unicode_tables();
  console.error('usage: tokenizer_reference.js encode TOKENIZER_JSON INPUT_JSON OUTPUT_BIN\n' +
                '       tokenizer_reference.js unicode TOKENIZER_JSON OUTPUT_TXT\n' +
                '       tokenizer_reference.js unicode-tables');
  process.exit(2);
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
