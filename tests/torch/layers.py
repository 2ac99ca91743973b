"""PyTorch parity of layers and sequence models: outputs, loss and gradients.

    layers.py LAYER_RUN layers             every layer case (ctest torch_layers)
    layers.py LAYER_RUN char_rnn|char_lstm|tiny_gpt    a whole model of models/ (torch_parity_*)

Each case is a model text for nnc and the same computation in torch.nn, both in float64: the
torch modules' weights and random inputs go to a safetensors file under PyTorch's state_dict
names, layer_run computes outputs, loss and gradients with the reference interpreter, and every
output and every gradient (parameters and f32 inputs) is compared with |a-b| <= atol + rtol*|b|.
Exit 0 when all agree, 1 otherwise, 77 when torch is missing (a failure under CI=true).
"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("torch or numpy missing")
    sys.exit(1 if os.environ.get("CI") == "true" else 77)

sys.path.insert(0, os.path.dirname(__file__))
import safetensors_np  # noqa: E402

torch.set_default_dtype(torch.float64)
RTOL, ATOL = 1e-7, 1e-9


def run_case(layer_run, name, text, modules, inputs, forward, sets=()):
    """modules: prefix -> nn.Module; inputs: name -> tensor; forward(m, x) -> dict incl. 'loss'."""
    torch.manual_seed(0)
    tensors = {}
    for prefix, mod in modules.items():
        for k, v in mod.state_dict().items():
            tensors[f"{prefix}.{k}"] = v.detach().numpy()
    for k, v in inputs.items():
        tensors[k] = v.detach().numpy().astype(np.int32 if v.dtype == torch.int64 else np.float64)
    xs = {k: (v.clone().requires_grad_(True) if v.is_floating_point() else v) for k, v in inputs.items()}
    ref = forward(modules, xs)
    ref["loss"].backward()
    with tempfile.TemporaryDirectory() as tmp:
        model, src, dst = (os.path.join(tmp, f) for f in ("m.nn", "in.safetensors", "out.safetensors"))
        with open(model, "w") as f:
            f.write(text)
        safetensors_np.save(src, tensors)
        cmd = [layer_run, model, src, dst]
        for s in sets:
            cmd += ["--set", s]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL {name}: layer_run failed\n{r.stderr}")
            return False
        got = safetensors_np.load(dst)
    want = {k: v.detach() for k, v in ref.items()}
    for prefix, mod in modules.items():
        for k, p in mod.named_parameters():
            if p.grad is not None:
                want[f"grad.{prefix}.{k}"] = p.grad
    for k, v in xs.items():
        if v.is_floating_point() and v.grad is not None:
            want[f"grad.{k}"] = v.grad
    ok = True
    for k, w in want.items():
        if k not in got:
            if k.startswith("grad."):  # a tied parameter's gradient is reported under its source
                continue
            print(f"FAIL {name}: nnc has no output '{k}'")
            ok = False
            continue
        w = w.numpy().reshape(got[k].shape)
        err = np.abs(got[k] - w) - (ATOL * max(1.0, float(np.abs(w).max(initial=0))) + RTOL * np.abs(w))
        worst = int(np.argmax(err)) if err.size else 0
        if err.size and err.flat[worst] > 0:
            print(f"FAIL {name}: {k} differs at flat index {worst}: nnc {got[k].flat[worst]!r} torch {w.flat[worst]!r}")
            ok = False
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {len(want)} tensors")
    return ok


def rand(*shape):
    return torch.randn(*shape)


def tokens(hi, *shape):
    return torch.randint(0, hi, shape)


# --- layer cases ---------------------------------------------------------------------------------

def recurrent_case(kind, batch_first, layers, with_state, bias=True, relu=False):
    B, T, I, H = 3, 5, 4, 6
    torch.manual_seed(1)
    ctor = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}[kind]
    kw = dict(num_layers=layers, batch_first=batch_first, bias=bias)
    if relu:
        kw["nonlinearity"] = "relu"
    mod = ctor(I, H, **kw)
    xshape, sshape = ([B, T, I] if batch_first else [T, B, I]), [layers, B, H]
    xt = "[B, %d, %d]" % (T, I) if batch_first else "[%d, B, %d]" % (T, I)
    ot = "[B, %d, %d]" % (T, H) if batch_first else "[%d, B, %d]" % (T, H)
    nst = 2 if kind == "LSTM" else 1
    state_in = ", ".join(f"s{i}: f32[{layers}, B, {H}]" for i in range(nst)) if with_state else ""
    args = "x" + ("".join(f", s{i}" for i in range(nst)) if with_state else "")
    outs = "out, hn" + (", cn" if nst == 2 else "")
    opts = f"num_layers={layers}, batch_first={'true' if batch_first else 'false'}, bias={'true' if bias else 'false'}"
    if relu:
        opts += ', nonlinearity="relu"'
    extra = " + sum(cn * r2)" if nst == 2 else ""
    text = f"""
model t(x: f32{xt}, r: f32{ot}, r1: f32[{layers}, B, {H}]{', r2: f32[%d, B, %d]' % (layers, H) if nst == 2 else ''}{', ' + state_in if state_in else ''}) {{
  layer rnn = {kind}({I}, {H}, {opts})
  {outs} = rnn({args})
  minimize sum(out * r) + sum(hn * r1){extra}
  return out, hn
}}
"""
    inputs = {"x": rand(*xshape), "r": rand(*(xshape[:2] + [H])), "r1": rand(*sshape)}
    if nst == 2:
        inputs["r2"] = rand(*sshape)
    if with_state:
        for i in range(nst):
            inputs[f"s{i}"] = rand(*sshape) * 0.5

    def forward(m, x):
        st = None
        if with_state:
            st = (x["s0"], x["s1"]) if nst == 2 else x["s0"]
        out, h = m["rnn"](x["x"], st)
        if nst == 2:
            h, c = h
        loss = (out * x["r"]).sum() + (h * x["r1"]).sum()
        if nst == 2:
            loss = loss + (c * x["r2"]).sum()
        return {"out": out, "hn": h, "loss": loss}

    return text, {"rnn": mod}, inputs, forward


def mha_case(mode):
    B, T, S, E, heads = 2, 5, 4, 8, 2
    torch.manual_seed(2)
    bf = mode != "cross"
    mod = nn.MultiheadAttention(E, heads, batch_first=bf)
    with torch.no_grad():  # nonzero biases, so their gradients and uses are tested too
        mod.in_proj_bias.uniform_(-0.5, 0.5)
        mod.out_proj.bias.uniform_(-0.5, 0.5)
    causal = mode == "causal"
    if mode == "cross":
        text = f"""
model t(q: f32[{T}, B, {E}], kv: f32[{S}, B, {E}], m: f32[{T}, {S}], r: f32[{T}, B, {E}]) {{
  layer attn = MultiheadAttention({E}, {heads})
  y = attn(q, kv, kv, m > 0.5)
  minimize sum(y * r)
  return y
}}
"""
        inputs = {"q": rand(T, B, E), "kv": rand(S, B, E), "m": torch.rand(T, S), "r": rand(T, B, E)}
        inputs["m"][:, 0] = 0.0  # no row is masked out entirely

        def forward(m, x):
            y, _ = m["attn"](x["q"], x["kv"], x["kv"], attn_mask=x["m"] > 0.5, need_weights=False)
            return {"y": y, "loss": (y * x["r"]).sum()}
    elif mode == "additive":
        text = f"""
model t(x: f32[B, {T}, {E}], m: f32[{T}, {T}], r: f32[B, {T}, {E}]) {{
  layer attn = MultiheadAttention({E}, {heads}, batch_first=true)
  y = attn(x, x, x, m)
  minimize sum(y * r)
  return y
}}
"""
        inputs = {"x": rand(B, T, E), "m": rand(T, T), "r": rand(B, T, E)}

        def forward(m, x):
            y, _ = m["attn"](x["x"], x["x"], x["x"], attn_mask=x["m"], need_weights=False)
            return {"y": y, "loss": (y * x["r"]).sum()}
    else:
        text = f"""
model t(x: f32[B, {T}, {E}], r: f32[B, {T}, {E}]) {{
  layer attn = MultiheadAttention({E}, {heads}, batch_first=true, causal={'true' if causal else 'false'})
  y = attn(x)
  minimize sum(y * r)
  return y
}}
"""
        inputs = {"x": rand(B, T, E), "r": rand(B, T, E)}

        def forward(m, x):
            mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if causal else None
            y, _ = m["attn"](x["x"], x["x"], x["x"], attn_mask=mask, need_weights=False)
            return {"y": y, "loss": (y * x["r"]).sum()}
    return text, {"attn": mod}, inputs, forward


def simple_cases():
    cases = {}
    torch.manual_seed(3)
    ln = nn.LayerNorm(6)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-0.5, 0.5)
    cases["layernorm"] = ("""
model t(x: f32[B, 4, 6], r: f32[B, 4, 6]) {
  layer ln = LayerNorm(6)
  y = ln(x)
  minimize sum(y * r)
  return y
}
""", {"ln": ln}, {"x": rand(3, 4, 6), "r": rand(3, 4, 6)},
        lambda m, x: (lambda y: {"y": y, "loss": (y * x["r"]).sum()})(m["ln"](x["x"])))
    for approx in ("none", "tanh"):
        cases[f"gelu_{approx}"] = (f"""
model t(x: f32[B, 7], r: f32[B, 7]) {{
  y = gelu(x, approximate="{approx}")
  minimize sum(y * r)
  return y
}}
""", {}, {"x": rand(3, 7) * 3, "r": rand(3, 7)},
            (lambda a: lambda m, x: (lambda y: {"y": y, "loss": (y * x["r"]).sum()})(F.gelu(x["x"], approximate=a)))(approx))
    # sinusoidal features of a learned projection and a SiLU MLP: sin, cos and silu with their gradients
    mlp = {"freq": nn.Linear(4, 8), "fc1": nn.Linear(16, 16), "fc2": nn.Linear(16, 3)}
    cases["sincos_silu_mlp"] = ("""
model t(x: f32[B, 4], r: f32[B, 3]) {
  layer freq = Linear(8)
  layer fc1 = Linear(16)
  layer fc2 = Linear(3)
  f = freq(x)
  y = fc2(silu(fc1(concat([sin(f * 3.0), cos(f)], -1))))
  minimize sum(y * r)
  return y
}
""", mlp, {"x": rand(3, 4), "r": rand(3, 3)}, sincos_reference)
    emb = nn.Embedding(10, 6)
    cases["embedding"] = ("""
model t(x: i32[B, 5], r: f32[B, 5, 6]) {
  layer emb = Embedding(10, 6)
  y = emb(x)
  minimize sum(y * r)
  return y
}
""", {"emb": emb}, {"x": tokens(10, 3, 5), "r": rand(3, 5, 6)},
        lambda m, x: (lambda y: {"y": y, "loss": (y * x["r"]).sum()})(m["emb"](x["x"])))
    # slicing, stacking and a hand-written loop against the same torch code
    cases["loop_slices"] = ("""
model t(x: f32[B, 6, 4], r: f32[B, 3, 2]) {
  outs = []
  acc = x[:, 0, 0:2]
  for t in 1..4 {
    acc = tanh(acc + x[:, t, -2:] * x[:, t + 2, ::2])
    outs = outs + [acc]
  }
  y = stack(outs, 1)
  a, b = chunk(y, 2, -1)
  z = concat([b, a], -1)
  minimize sum(z * r) + sum(masked_fill(y, y > 0.5, 0.0))
  return z
}
""", {}, {"x": rand(2, 6, 4), "r": rand(2, 3, 2)}, loop_reference)
    return cases


def sincos_reference(m, x):
    f = m["freq"](x["x"])
    y = m["fc2"](F.silu(m["fc1"](torch.cat([torch.sin(f * 3.0), torch.cos(f)], -1))))
    return {"y": y, "loss": (y * x["r"]).sum()}


def loop_reference(m, x):
    xx, outs = x["x"], []
    acc = xx[:, 0, 0:2]
    for t in range(1, 4):
        acc = torch.tanh(acc + xx[:, t, -2:] * xx[:, t + 2, ::2])
        outs.append(acc)
    y = torch.stack(outs, 1)
    a, b = torch.chunk(y, 2, -1)
    z = torch.cat([b, a], -1)
    loss = (z * x["r"]).sum() + y.masked_fill(y > 0.5, 0.0).sum()
    return {"z": z, "loss": loss}


def layer_cases():
    cases = {}
    for kind in ("RNN", "LSTM", "GRU"):
        cases[f"{kind.lower()}_batch_first_2layers_state"] = recurrent_case(kind, True, 2, True)
        cases[f"{kind.lower()}_seq_first"] = recurrent_case(kind, False, 1, False)
    cases["lstm_no_bias"] = recurrent_case("LSTM", True, 1, False, bias=False)
    cases["rnn_relu"] = recurrent_case("RNN", True, 1, True, relu=True)
    for mode in ("self", "causal", "cross", "additive"):
        cases[f"mha_{mode}"] = mha_case(mode)
    cases.update(simple_cases())
    return cases


# --- whole models ----------------------------------------------------------------------------------

class CharRNN(nn.Module):
    def __init__(self, kind, V, E, H):
        super().__init__()
        self.emb = nn.Embedding(V, E)
        self.kind = kind  # the layer's name in the model file: rnn or lstm
        setattr(self, kind, {"rnn": nn.RNN, "lstm": nn.LSTM}[kind](E, H, batch_first=True))
        self.head = nn.Linear(H, V)

    def forward(self, x):
        h, _ = getattr(self, self.kind)(self.emb(x))
        return self.head(h)


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.proj = nn.Linear(4 * d, d)

    def forward(self, x):
        T = x.shape[1]
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.proj(F.gelu(self.fc(self.ln2(x))))


class TinyGPT(nn.Module):
    def __init__(self, V, T, d, heads, layers):
        super().__init__()
        self.tok = nn.Embedding(V, d)
        self.pos = nn.Embedding(T, d)
        self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, V, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, x):
        h = self.tok(x) + self.pos(torch.arange(x.shape[1]))
        return self.head(self.ln_f(self.blocks(h)))


def model_case(name):
    B, V, T = 3, 16, 6
    torch.manual_seed(4)
    if name == "tiny_gpt":
        d, heads, layers = 16, 2, 2
        net = TinyGPT(V, T, d, heads, layers)
        with torch.no_grad():
            for mod in net.modules():
                if isinstance(mod, nn.MultiheadAttention):
                    mod.in_proj_bias.uniform_(-0.2, 0.2)
        sets = [f"V={V}", f"T={T}", f"d={d}", f"heads={heads}", f"layers={layers}"]
    else:
        E, H = 5, 7
        net = CharRNN(name.split("_")[1], V, E, H)
        sets = [f"V={V}", f"T={T}", f"E={E}", f"H={H}"]
    with open(os.path.join("models", f"{name}.nn")) as f:
        text = f.read()
    modules = {}
    for top, mod in net.named_children():
        modules[top] = mod
    inputs = {"x": tokens(V, B, T), "y": tokens(V, B, T)}

    def forward(m, x):
        logits = net(x["x"])
        loss = F.cross_entropy(logits.reshape(-1, V), x["y"].reshape(-1))
        return {"logits": logits, "loss": loss}

    if name == "tiny_gpt":  # the tied head.weight is tok.weight's storage: written once
        modules = {k: v for k, v in modules.items() if k != "head"}
    return text, modules, inputs, forward, sets


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 1
    layer_run, what = sys.argv[1], sys.argv[2]
    ok = True
    if what == "layers":
        for name, (text, mods, inputs, fwd) in layer_cases().items():
            ok &= run_case(layer_run, name, text, mods, inputs, fwd)
    else:
        text, mods, inputs, fwd, sets = model_case(what)
        ok = run_case(layer_run, what, text, mods, inputs, fwd, sets)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
