// SPDX-License-Identifier: MIT
// HF tokenizers (official Node binding, tests/node/node_modules) on the corpora of bench_tokenizer.cpp, measured
// the same way: encodeBatch over the whole corpus (the full encodings are built), lines/s and MB/s of UTF-8 input,
// REPS repetitions. Single thread: run with RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false (the Rust side then
// encodes the batch on one thread); batch: all cores. Also measures the binding's own cost per text (encodeBatch of
// as many empty strings) so that a reader can see how much of HF's time is not tokenization.
//   node benchmarks/bench_tokenizer_hf.js MODE REPS     (MODE: single | batch; prints one JSON line per corpus)
'use strict';
const fs = require('fs');
const path = require('path');
let tk;
try {
  tk = require('tokenizers');
} catch (e) {
  tk = require(path.join(__dirname, '..', 'tests', 'node', 'node_modules', 'tokenizers'));
}

const data = path.join(__dirname, '..', '..', 'shared', 'data');
const mode = process.argv[2] || 'single';
const reps = Number(process.argv[3] || 5);

function corpora() {
  const sst2 = fs.readFileSync(path.join(data, 'sentiment/sst2/train_full.tsv'), 'utf8').split('\n').slice(1)
    .filter((l) => l.length).map((l) => l.split('\t')[0]);
  const amazon = ['books.jsonl', 'dvd.jsonl'].flatMap((f) =>
    fs.readFileSync(path.join(data, 'sentiment/amazon_reviews', f), 'utf8').split('\n').filter((l) => l.length)
      .map((l) => JSON.parse(l).text));
  return { sst2_train_full: sst2, amazon_reviews: amazon };
}

const median = (v) => { const s = [...v].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

async function time_batch(t, texts) {
  const t0 = process.hrtime.bigint();
  const encs = await t.encodeBatch(texts);
  const t1 = process.hrtime.bigint();
  if (encs.length !== texts.length) throw new Error('encodeBatch returned ' + encs.length + ' encodings');
  return Number(t1 - t0) / 1e9;
}

async function main() {
  const t = tk.Tokenizer.fromFile(path.join(data, 'bert-base-uncased', 'tokenizer.json'));
  // the same validation as bench_tokenizer.cpp
  const check = await t.encode('Héllo wörld 😀 naïve café');
  if (check.getIds().join(' ') !== '101 7592 2088 100 15743 7668 102') throw new Error('unexpected ids');
  for (const [name, texts] of Object.entries(corpora())) {
    const bytes = texts.reduce((a, s) => a + Buffer.byteLength(s, 'utf8'), 0);
    await time_batch(t, texts.slice(0, 1000)); // warm-up
    const secs = [];
    for (let r = 0; r < reps; r++) secs.push(await time_batch(t, texts));
    const empty = texts.map(() => '');
    const overhead = [];
    for (let r = 0; r < reps; r++) overhead.push(await time_batch(t, empty));
    const s = median(secs);
    console.log(JSON.stringify({
      impl: 'hf_tokenizers_node', mode, corpus: name, lines: texts.length, bytes, reps,
      seconds_median: s, seconds_min: Math.min(...secs), seconds_max: Math.max(...secs),
      lines_per_s: texts.length / s, mb_per_s: bytes / 1e6 / s,
      empty_texts_seconds_median: median(overhead),
      rayon_num_threads: process.env.RAYON_NUM_THREADS || null,
      tokenizers_parallelism: process.env.TOKENIZERS_PARALLELISM || null,
    }));
  }
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
