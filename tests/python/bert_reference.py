# SPDX-License-Identifier: MIT
"""PyTorch reference for minibert's BERT: a line-for-line port of transformers' modeling_bert.py (eager attention)
— BertEmbeddings, BertSelfAttention, BertSelfOutput, BertIntermediate, BertOutput, BertPooler,
BertForSequenceClassification (problem_type losses) and BertForMaskedLM (decoder tied to the word embeddings) —
with transformers' parameter names and _init_weights. (transformers itself is not installable on these machines;
torch is Debian's python3-torch.)

usage: bert_reference.py --config CONFIG.json --inputs INPUTS.json --out DIR --task {seq_cls,mlm}
                         [--seed N] [--dtype float32|float64]
Writes into DIR: config.json (the given config with architectures), model.safetensors (F32 weights, written as
safetensors' own writer does), pytorch_model.bin (torch.save of the same state dict, the older HF format), and
reference.safetensors with the model's outputs in eval mode: "logits", "loss", and "grad.<param>" for every parameter.
INPUTS.json: {"input_ids": [[...]], "attention_mask": [[...]], "token_type_ids": [[...]],
              "labels": [...] (ints for single-label / mlm (B,T with -100), floats for regression / multi-label)}
"""
import argparse
import json
import math
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_reference  # noqa: E402

ACT = {
    "gelu": lambda x: nn.functional.gelu(x),
    "gelu_new": lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0)))),
    "gelu_pytorch_tanh": lambda x: nn.functional.gelu(x, approximate="tanh"),
    "relu": lambda x: nn.functional.relu(x),
}


class BertEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c["vocab_size"], c["hidden_size"], padding_idx=c.get("pad_token_id", 0))
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], c["hidden_size"])
        self.token_type_embeddings = nn.Embedding(c["type_vocab_size"], c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.dropout = nn.Dropout(c["hidden_dropout_prob"])

    def forward(self, input_ids, token_type_ids):
        seq_length = input_ids.shape[1]
        position_ids = torch.arange(seq_length).unsqueeze(0)
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        embeddings += self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))


class BertSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.num_attention_heads = c["num_attention_heads"]
        self.attention_head_size = c["hidden_size"] // c["num_attention_heads"]
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query = nn.Linear(c["hidden_size"], self.all_head_size)
        self.key = nn.Linear(c["hidden_size"], self.all_head_size)
        self.value = nn.Linear(c["hidden_size"], self.all_head_size)
        self.dropout = nn.Dropout(c["attention_probs_dropout_prob"])

    def transpose_for_scores(self, x):
        return x.view(x.size()[:-1] + (self.num_attention_heads, self.attention_head_size)).permute(0, 2, 1, 3)

    def forward(self, hidden_states, attention_mask):
        q = self.transpose_for_scores(self.query(hidden_states))
        k = self.transpose_for_scores(self.key(hidden_states))
        v = self.transpose_for_scores(self.value(hidden_states))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.attention_head_size)
        scores = scores + attention_mask
        probs = self.dropout(nn.functional.softmax(scores, dim=-1))
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(ctx.size()[:-2] + (self.all_head_size,))


class BertResidualOutput(nn.Module):  # BertSelfOutput (in = hidden) and BertOutput (in = intermediate)
    def __init__(self, c, in_size):
        super().__init__()
        self.dense = nn.Linear(in_size, c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.dropout = nn.Dropout(c["hidden_dropout_prob"])

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertResidualOutput(c, c["hidden_size"])

    def forward(self, h, mask):
        return self.output(self.self(h, mask), h)


class BertIntermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["intermediate_size"])
        self.act = ACT[c["hidden_act"]]

    def forward(self, h):
        return self.act(self.dense(h))


class BertLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertResidualOutput(c, c["intermediate_size"])

    def forward(self, h, mask):
        a = self.attention(h, mask)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(c) for _ in range(c["num_hidden_layers"])])

    def forward(self, h, mask):
        for layer in self.layer:
            h = layer(h, mask)
        return h


class BertPooler(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.activation = nn.Tanh()

    def forward(self, h):
        return self.activation(self.dense(h[:, 0]))


class BertModel(nn.Module):
    def __init__(self, c, add_pooling_layer=True):
        super().__init__()
        self.embeddings = BertEmbeddings(c)
        self.encoder = BertEncoder(c)
        self.pooler = BertPooler(c) if add_pooling_layer else None

    def forward(self, input_ids, attention_mask, token_type_ids):
        dtype = self.embeddings.word_embeddings.weight.dtype
        ext = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        h = self.encoder(self.embeddings(input_ids, token_type_ids), ext)
        return h, (self.pooler(h) if self.pooler is not None else None)


def init_weights(model, c):
    """transformers' BertPreTrainedModel._init_weights"""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.weight.data.normal_(mean=0.0, std=c["initializer_range"])
            if m.bias is not None:
                m.bias.data.zero_()
        elif isinstance(m, nn.Embedding):
            m.weight.data.normal_(mean=0.0, std=c["initializer_range"])
            if m.padding_idx is not None:
                m.weight.data[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            m.bias.data.zero_()
            m.weight.data.fill_(1.0)


class BertForSequenceClassification(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.num_labels = len(c.get("id2label", {0: 0, 1: 1}))
        self.bert = BertModel(c)
        p = c.get("classifier_dropout")
        self.dropout = nn.Dropout(p if p is not None else c["hidden_dropout_prob"])
        self.classifier = nn.Linear(c["hidden_size"], self.num_labels)

    def forward(self, input_ids, attention_mask, token_type_ids, labels):
        _, pooled = self.bert(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(self.dropout(pooled))
        problem = self.c.get("problem_type")
        if problem is None:
            if self.num_labels == 1:
                problem = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem = "single_label_classification"
            else:
                problem = "multi_label_classification"
        if problem == "regression":
            loss = nn.MSELoss()(logits.squeeze(), labels.squeeze().to(logits.dtype))
        elif problem == "single_label_classification":
            loss = nn.CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
        else:
            loss = nn.BCEWithLogitsLoss()(logits, labels.to(logits.dtype))
        return logits, loss


class BertLMPredictionHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transform = nn.Module()
        self.transform.dense = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.transform.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.act = ACT[c["hidden_act"]]
        self.decoder = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        self.bias = nn.Parameter(torch.zeros(c["vocab_size"]))

    def forward(self, h):
        h = self.transform.LayerNorm(self.act(self.transform.dense(h)))
        return self.decoder(h) + self.bias


class BertForMaskedLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bert = BertModel(c, add_pooling_layer=False)
        self.cls = nn.Module()
        self.cls.predictions = BertLMPredictionHead(c)
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight  # tied

    def forward(self, input_ids, attention_mask, token_type_ids, labels):
        h, _ = self.bert(input_ids, attention_mask, token_type_ids)
        logits = self.cls.predictions(h)
        loss = nn.CrossEntropyLoss()(logits.view(-1, logits.shape[-1]), labels.view(-1))
        return logits, loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--task", choices=["seq_cls", "mlm"], required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)
    c = json.load(open(a.config))
    inp = json.load(open(a.inputs))
    model = BertForSequenceClassification(c) if a.task == "seq_cls" else BertForMaskedLM(c)
    init_weights(model, c)
    # random LayerNorm and bias values too, so a swapped or skipped bias/LayerNorm tensor cannot go unnoticed
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    os.makedirs(a.out, exist_ok=True)
    c = dict(c)
    c["architectures"] = ["BertForSequenceClassification" if a.task == "seq_cls" else "BertForMaskedLM"]
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if a.task == "mlm":  # transformers stores a tied weight once
        state.pop("cls.predictions.decoder.weight", None)
    safetensors_reference.save(state, os.path.join(a.out, "model.safetensors"), {"format": "pt"})
    torch.save(state, os.path.join(a.out, "pytorch_model.bin"))

    dt = torch.float64 if a.dtype == "float64" else torch.float32
    model = model.to(dt)
    model.eval()
    ids = torch.tensor(inp["input_ids"], dtype=torch.long)
    mask = torch.tensor(inp["attention_mask"], dtype=torch.long)
    types = torch.tensor(inp["token_type_ids"], dtype=torch.long)
    labels = torch.tensor(inp["labels"])
    logits, loss = model(ids, mask, types, labels)
    loss.backward()
    out = {"logits": logits.detach().to(torch.float64), "loss": loss.detach().reshape(1).to(torch.float64)}
    for name, p in model.named_parameters():
        out["grad." + name] = p.grad.detach().to(torch.float64)
    safetensors_reference.save(out, os.path.join(a.out, "reference.safetensors"))


if __name__ == "__main__":
    main()
