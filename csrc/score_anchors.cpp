// Schema of the CPU kernel behind the score_anchors op's "cpu" backend at inference
// (rcl_kernels/cpu/score_anchors.py): the first layer's activations of every segment, computed by
// linearity from the projected features. Kernel: cpu/score_anchors_cpu.cpp.
//   projected    (B, HB, T, N, W): Linear1's point-n slice applied to every feature step, its
//                hidden units in HB blocks of W (unit h = hb W + j; units >= H are padding)
//   segments     (B, K, 2)
//   coordinates  (B, K, E): phi(x), the segment's coordinate features
//   coord_weight (E, HB W): Linear1's phi columns, transposed, zero past H
//   bias         (HB W): Linear1's bias, zero past H
// returns hidden (B, K, H), hidden_units = H, (HB - 1) W < H <= HB W:
//   hidden[b, k, h] = bias[h] + sum_e coordinates[b, k, e] coord_weight[e, h]
//                     + (1 / S) sum_{n, s} (w0 projected[b, hb, i0, n, j] + w1 projected[b, hb, i1, n, j])
// with the taps (i0, i1, w0, w1) of sub-sample (n, s) given by SoI's sampling rules, then relu if
// asked; a NaN position makes the row NaN. Used without autograd only: with autograd the backend
// goes through F.embedding_bag.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(rcl_kernels, m) {
  m.def(
      "score_anchors_hidden(Tensor projected, Tensor segments, Tensor coordinates, Tensor coord_weight, "
      "Tensor bias, int hidden_units, int num_samples, int samples_per_point, float context, str padding, "
      "bool relu) -> Tensor");
}
