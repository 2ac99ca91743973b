"""char_lstm's training step in Debian's PyTorch (models/char_lstm.nn: Embedding(128, 64),
LSTM(64, 256, batch_first), Linear(256, 128), cross entropy over every position, Adam 2e-3,
batch 32, T = 64), for docs/benchmarks.md: prints the BLAS torch loaded and samples/s.

usage: /usr/bin/python3 bench/char_lstm_torch.py [threads] [steps]
"""
import sys
import time

import torch
import torch.nn as nn

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
torch.set_num_threads(threads)
torch.manual_seed(0)
print("BLAS:", [l.split()[-1] for l in open("/proc/self/maps") if "blas" in l.lower()][-1:])


class CharLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.lstm, self.head = nn.Embedding(128, 64), nn.LSTM(64, 256, batch_first=True), nn.Linear(256, 128)

    def forward(self, x):
        return self.head(self.lstm(self.emb(x))[0])


model = CharLSTM()
opt = torch.optim.Adam(model.parameters(), lr=2e-3)
x, y = torch.randint(0, 128, (32, 64)), torch.randint(0, 128, (32, 64))
for step in range(steps + 3):
    if step == 3:
        t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x).reshape(-1, 128), y.reshape(-1))
    loss.backward()
    opt.step()
print("threads %d: %.1f samples/s" % (threads, steps * 32 / (time.perf_counter() - t0)))
