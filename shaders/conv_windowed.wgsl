// The "windowed" convolution kernels, and the passes every adapter runs with them: each
// invocation computes a block of results in registers (B x COLS for forward and forward
// mode, B x B for the others; no workgroup memory, no barriers: on software GPUs barriers
// cost far more than the loads they save). On other adapters the forward pass, forward mode
// and the stride-1 backward pass to the input run as tiled matrix products (conv_tiled.wgsl);
// the weight gradient and the backward pass to the input at stride > 1 run here everywhere.
//
// Forward and forward mode read the filters from a packed copy (pack_filters): the B output
// channels of a tile at one tap are one vec4, and each filter row is padded with zero taps to
// a multiple of CHUNK. A row of the tile then reads CHUNK taps as CHUNK vec4 loads and the
// input window under them once (COLS - 1 + CHUNK values at stride 1) into registers. Loads
// are what costs on a software GPU (lavapipe runs every storage load lane by lane), and this
// halves them or better. The backward pass to the input at stride 1 is the forward kernel on
// the flipped, transposed filters (pack_filters with P.flipped).
//
// B, COLS, WINDOW and MAX_TAPS are generated from src/kernels/conv/windowed.rs.

// Taps of a filter row read per step; the host sets it to k_w when k_w <= 8, else 4.
override CHUNK: u32 = 4u;
// Whether the stride is 1: the tile's columns then share one input window.
override UNIT_STRIDE: bool = true;
// Forward mode (Jv) instead of the forward pass.
override JVP: bool = false;
// Two blocks of B output channels per invocation of forward instead of one: each input window
// loaded serves twice the multiply-adds.
override WIDE: bool = false;

// Output channels per invocation of forward.
fn tile_channels() -> u32 { return select(B, 2u * B, WIDE); }

fn blocks(n: u32) -> u32 { return (n + B - 1u) / B; }

// Where in the window column k of the tile meets tap j of the current chunk.
fn window_at(k: u32, j: u32) -> u32 { return select(k * CHUNK + j, k + j, UNIT_STRIDE); }

// The window positions: at stride 1, COLS - 1 + CHUNK consecutive columns from x0; else the
// CHUNK columns under each of the COLS outputs (x0 + k * stride + j).
fn window_len() -> u32 { return select(COLS * CHUNK, COLS - 1u + CHUNK, UNIT_STRIDE); }

fn window_column(x0: i32, m: u32) -> i32 {
    let k = m / CHUNK;
    let j = m % CHUNK;
    return select(x0 + i32(k * P.stride + j), x0 + i32(m), UNIT_STRIDE);
}

// The tile of outputs an invocation of forward computes: output channels oc0..oc0+B-1 (to
// oc0+2B-1 when WIDE) and
// columns q0..q0+COLS-1 of row p of sample n (invocations run along a row first, so that
// neighbours share their filters).
struct Tile { n: u32, oc0: u32, p: u32, q0: u32, valid: bool }

fn output_tile(t: u32) -> Tile {
    let col_blocks = (P.out_w + COLS - 1u) / COLS;
    let oc_blocks = (P.out_c + tile_channels() - 1u) / tile_channels();
    let q0 = (t % col_blocks) * COLS;
    let p = (t / col_blocks) % P.out_h;
    let oc0 = ((t / (col_blocks * P.out_h)) % oc_blocks) * tile_channels();
    let n = t / (col_blocks * P.out_h * oc_blocks);
    return Tile(n, oc0, p, q0, t < P.batch * oc_blocks * P.out_h * col_blocks);
}

// Where packed filter (tap k of the padded rows, output channel block ob) is, in vec4s.
fn packed_at(k: u32, ob: u32) -> u32 { return k * blocks(P.out_c) + ob; }

// ---- filter packing: one invocation per packed value ---------------------------------------
//   packed[packed_at(k, o / B) * B + o % B] = W[o, tap k], 0 for padding taps and o >= out_c,
// where the taps k = (c * k_h + i) * k_wp + j run over the padded rows.

@group(0) @binding(1) var<storage, read> pack_theta: array<f32>;
@group(0) @binding(2) var<storage, read_write> pack_out: array<f32>;

struct PackedSlot { o: u32, c: u32, i: u32, j: u32, valid: bool }

fn packed_slot(e: u32) -> PackedSlot {
    let lane = e % B;
    let ob = (e / B) % blocks(P.out_c);
    let k = e / (B * blocks(P.out_c));
    let j = k % P.k_wp;
    let i = (k / P.k_wp) % P.k_h;
    let c = k / (P.k_wp * P.k_h);
    let o = ob * B + lane;
    return PackedSlot(o, c, i, j, o < P.out_c && j < P.k_w);
}

fn packed_len() -> u32 { return P.in_c * P.k_h * P.k_wp * blocks(P.out_c) * B; }

// With P.flipped, the filters of the backward pass to the input as a convolution of dy (P
// then describes that convolution: in_c is the layer's out_c and out_c its in_c):
// W'[c, o, i, j] = W[o, c, k_h - 1 - i, k_w - 1 - j].
@compute @workgroup_size(WG)
fn pack_filters(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= packed_len()) { return; }
    let s = packed_slot(e);
    let j = min(s.j, P.k_w - 1u);
    let direct = ((s.o * P.in_c + s.c) * P.k_h + s.i) * P.k_w + j;
    let flipped = ((s.c * P.out_c + s.o) * P.k_h + (P.k_h - 1u - s.i)) * P.k_w + (P.k_w - 1u - j);
    let at = P.w_off + select(direct, flipped, P.flipped != 0u);
    pack_out[P.v_filters * B + e] = select(0.0, pack_theta[min(at, arrayLength(&pack_theta) - 1u)], s.valid);
}

// ---- forward, and forward mode: one invocation per (sample, B output channels, output row,
// COLS columns) -----------------------------------------------------------------------------
//   forward:      y = W·x + b, with the bias from fwd_bias (theta) when P.has_bias
//   forward mode: ry = W·rx + V_W·x + V_b (JVP), fused in one pass over the tile; the packed
//                 filters of theta come first in fwd_filters, those of V from P.v_filters,
//                 and fwd_bias is V. (The first layer, where rx = 0, runs the forward pass
//                 with V in place of theta.) The forward pass binds x again as fwd_rx.

@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_rx: array<f32>;
@group(0) @binding(3) var<storage, read> fwd_bias: array<f32>;
@group(0) @binding(4) var<storage, read> fwd_filters: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> fwd_y: array<f32>;

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let tile = output_tile(flat_index(gid, nwg));
    if (!tile.valid) { return; }
    let ob = tile.oc0 / B;
    // The second block of a wide tile (the last one again past out_c: its results are not
    // stored).
    let ob2 = min(ob + 1u, blocks(P.out_c) - 1u);
    let s = i32(P.stride);
    let ix0 = i32(tile.q0) * s - P.pad_w;
    // acc[k] holds the B channels at output column q0 + k; acc2[k] the next B, when WIDE.
    var acc: array<vec4<f32>, COLS>;
    var acc2: array<vec4<f32>, COLS>;
    for (var c = 0u; c < P.in_c; c++) {
        let plane = (tile.n * P.in_c + c) * P.in_h * P.in_w;
        for (var i = 0u; i < P.k_h; i++) {
            let iy = i32(tile.p) * s + i32(i) - P.pad_h;
            if (iy < 0 || iy >= i32(P.in_h)) { continue; }
            let taps = (c * P.k_h + i) * P.k_wp;
            for (var j0 = 0u; j0 < P.k_wp; j0 += CHUNK) {
                // The input row under this chunk of taps (and, in forward mode, the
                // direction's), loaded once.
                var win_x: array<f32, WINDOW>;
                var win_rx: array<f32, WINDOW>;
                for (var m = 0u; m < window_len(); m++) {
                    let at = padded(plane, iy, window_column(ix0 + i32(j0), m));
                    win_x[m] = select(0.0, fwd_x[at.index], at.inside);
                    if (JVP) { win_rx[m] = select(0.0, fwd_rx[at.index], at.inside); }
                }
                for (var j = 0u; j < CHUNK; j++) {
                    add_tap(&acc, packed_at(taps + j0 + j, ob), j, &win_x, &win_rx);
                    if (WIDE) { add_tap(&acc2, packed_at(taps + j0 + j, ob2), j, &win_x, &win_rx); }
                }
            }
        }
    }
    store_tile(tile, tile.oc0, &acc);
    if (WIDE) { store_tile(tile, tile.oc0 + B, &acc2); }
}

// Adds tap j of the current chunk, whose packed filters (B output channels) are at k, to the
// tile's columns: acc[q] += W·x (forward) or W·rx + V·x (forward mode).
fn add_tap(acc: ptr<function, array<vec4<f32>, COLS>>, k: u32, j: u32,
           win_x: ptr<function, array<f32, WINDOW>>, win_rx: ptr<function, array<f32, WINDOW>>) {
    let w = fwd_filters[k];
    if (JVP) {
        let dw = fwd_filters[P.v_filters + k];
        for (var q = 0u; q < COLS; q++) {
            (*acc)[q] += w * (*win_rx)[window_at(q, j)] + dw * (*win_x)[window_at(q, j)];
        }
    } else {
        for (var q = 0u; q < COLS; q++) { (*acc)[q] += w * (*win_x)[window_at(q, j)]; }
    }
}

// y at output channels oc0..oc0+B-1 (those below out_c) of the tile's row and columns, plus
// the bias.
fn store_tile(tile: Tile, oc0: u32, acc: ptr<function, array<vec4<f32>, COLS>>) {
    for (var o = 0u; o < B; o++) {
        let oc = oc0 + o;
        if (oc >= P.out_c) { break; }
        var bias = 0.0;
        if (P.has_bias != 0u) { bias = fwd_bias[P.b_off + oc]; }
        let out_row = ((tile.n * P.out_c + oc) * P.out_h + tile.p) * P.out_w;
        for (var k = 0u; k < COLS; k++) {
            if (tile.q0 + k < P.out_w) { fwd_y[out_row + tile.q0 + k] = (*acc)[k][o] + bias; }
        }
    }
}

// ---- backward to the input at stride > 1: one invocation per (sample, B input channels, row,
// B columns); at stride 1 the host runs forward on the flipped filters instead.
//   dx[n,c,h,w] = sum over (o,i,j) with h = p*stride + i - pad, w = q*stride + j - pad
//                 of W[o,c,i,j] * dy[n,o,p,q]

@group(0) @binding(1) var<storage, read> bwd_dy: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_theta: array<f32>;
@group(0) @binding(3) var<storage, read_write> bwd_dx: array<f32>;

// The output column that input column w meets through kernel column j, if any: (column, 1),
// else (0, 0).
fn source_column(w: u32, j: u32) -> vec2<i32> {
    let tx = i32(w) + P.pad_w - i32(j);
    let s = i32(P.stride);
    let valid = tx >= 0 && tx % s == 0 && tx / s < i32(P.out_w);
    return vec2<i32>(select(0, tx / s, valid), select(0, 1, valid));
}

@compute @workgroup_size(WG)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let col_blocks = blocks(P.in_w);
    let c_blocks = blocks(P.in_c);
    if (t >= P.batch * c_blocks * P.in_h * col_blocks) { return; }
    let w0 = (t % col_blocks) * B;
    let h = (t / col_blocks) % P.in_h;
    let c0 = ((t / (col_blocks * P.in_h)) % c_blocks) * B;
    let n = t / (col_blocks * P.in_h * c_blocks);
    let s = i32(P.stride);
    let taps = P.in_c * P.k_h * P.k_w;
    let plane_k = P.k_h * P.k_w;
    // Where the filters of the tile's input channels start (the last channel repeated past
    // in_c, whose results are not stored).
    var channel: array<u32, B>;
    for (var k = 0u; k < B; k++) { channel[k] = min(c0 + k, P.in_c - 1u) * plane_k; }
    // acc[k] holds the B input columns w0.. of channel c0 + k.
    var acc: array<vec4<f32>, B>;
    for (var i = 0u; i < P.k_h; i++) {
        let ty = i32(h) + P.pad_h - i32(i);
        if (ty < 0 || ty % s != 0 || ty / s >= i32(P.out_h)) { continue; }
        let p = u32(ty / s);
        for (var j = 0u; j < P.k_w; j++) {
            var column: array<u32, B>;
            var mask: vec4<f32>;
            for (var m = 0u; m < B; m++) {
                let source = source_column(w0 + m, j);
                column[m] = u32(source.x);
                mask[m] = f32(source.y);
            }
            if (all(mask == vec4<f32>(0.0))) { continue; }
            let k = i * P.k_w + j;
            for (var o = 0u; o < P.out_c; o++) {
                let wo = P.w_off + o * taps + k;
                let row = ((n * P.out_c + o) * P.out_h + p) * P.out_w;
                var w: vec4<f32>;
                var d: vec4<f32>;
                for (var m = 0u; m < B; m++) {
                    w[m] = bwd_theta[wo + channel[m]];
                    d[m] = bwd_dy[row + column[m]];
                }
                d = mask * d;
                for (var m = 0u; m < B; m++) { acc[m] += w[m] * d; }
            }
        }
    }
    for (var k = 0u; k < B; k++) {
        let c = c0 + k;
        if (c >= P.in_c) { break; }
        let row = ((n * P.in_c + c) * P.in_h + h) * P.in_w;
        for (var m = 0u; m < B; m++) {
            if (w0 + m < P.in_w) { bwd_dx[row + w0 + m] = acc[k][m]; }
        }
    }
}

// ---- backward to the parameters, in groups of samples -------------------------------------
// partial[g * params + k] = the sum over the samples [g*group_size, (g+1)*group_size) of
// parameter k's gradient; k < weights is W in its layout, the rest the bias (params = weights
// + out_c), if the layer has one (params = weights, and no invocation computes a bias).
// blas1::accumulate_groups then adds the groups into the gradient in a fixed order, so the
// result is repeatable bit for bit. An invocation computes B output channels x B consecutive
// taps (c, i, j) of W, or one bias.

@group(0) @binding(1) var<storage, read> par_x: array<f32>;
@group(0) @binding(2) var<storage, read> par_dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> par_partial: array<f32>;

// Where tap k = (c, i, j) reads x relative to the output pixel's window corner.
struct Tap { plane: u32, i: i32, j: i32 }

fn tap(k: u32) -> Tap {
    let j = k % P.k_w;
    let i = (k / P.k_w) % P.k_h;
    let c = k / (P.k_w * P.k_h);
    return Tap(c * P.in_h * P.in_w, i32(i) - P.pad_h, i32(j) - P.pad_w);
}

// x[plane + iy * in_w + ix] of par_x, or 0 in the zero padding.
fn x_value(plane: u32, iy: i32, ix: i32) -> f32 {
    let at = padded(plane, iy, ix);
    return select(0.0, par_x[at.index], at.inside);
}

// Group g's sum of dy over the samples and pixels of output channel o: the bias gradient.
fn store_bias_partial(g: u32, o: u32) {
    let n0 = g * P.group_size;
    let n1 = min(n0 + P.group_size, P.batch);
    let out_plane = P.out_h * P.out_w;
    var acc = 0.0;
    for (var n = n0; n < n1; n++) {
        let base = (n * P.out_c + o) * out_plane;
        for (var m = 0u; m < out_plane; m++) { acc += par_dy[base + m]; }
    }
    let weights = P.out_c * P.in_c * P.k_h * P.k_w;
    par_partial[g * (weights + P.has_bias * P.out_c) + weights + o] = acc;
}

@compute @workgroup_size(WG)
fn backward_params(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let taps = P.in_c * P.k_h * P.k_w;
    let weights = P.out_c * taps;
    let tap_blocks = blocks(taps);
    let weight_blocks = blocks(P.out_c) * tap_blocks;
    let per_group = weight_blocks + P.has_bias * P.out_c;
    if (t >= per_group * P.groups) { return; }
    let r = t % per_group;
    let g = t / per_group;
    let n0 = g * P.group_size;
    let n1 = min(n0 + P.group_size, P.batch);
    let out_plane = P.out_h * P.out_w;
    let out_g = g * (weights + P.has_bias * P.out_c);
    if (r >= weight_blocks) {
        store_bias_partial(g, r - weight_blocks);
        return;
    }
    let k0 = (r % tap_blocks) * B;
    let o0 = (r / tap_blocks) * B;
    // The block's taps and its output channels' offsets in dy (past the last tap or channel,
    // the last one again, whose results are not stored).
    var taps_of: array<Tap, B>;
    var dy_of: array<u32, B>;
    for (var m = 0u; m < B; m++) {
        taps_of[m] = tap(min(k0 + m, taps - 1u));
        dy_of[m] = (min(o0 + m, P.out_c - 1u) - o0) * out_plane;
    }
    let s = i32(P.stride);
    // acc[m] holds output channel o0 + m at the B taps k0...
    var acc: array<vec4<f32>, B>;
    for (var n = n0; n < n1; n++) {
        let x_base = n * P.in_c * P.in_h * P.in_w;
        let dy_base = (n * P.out_c + o0) * out_plane;
        for (var p = 0u; p < P.out_h; p++) {
            let y0 = i32(p) * s;
            for (var q = 0u; q < P.out_w; q++) {
                let x0 = i32(q) * s;
                let at = dy_base + p * P.out_w + q;
                var d: vec4<f32>;
                var v: vec4<f32>;
                for (var m = 0u; m < B; m++) {
                    d[m] = par_dy[at + dy_of[m]];
                    let tap = taps_of[m];
                    v[m] = x_value(x_base + tap.plane, y0 + tap.i, x0 + tap.j);
                }
                for (var m = 0u; m < B; m++) { acc[m] += d[m] * v; }
            }
        }
    }
    for (var m = 0u; m < B; m++) {
        let o = o0 + m;
        if (o >= P.out_c) { break; }
        for (var k = 0u; k < B; k++) {
            if (k0 + k < taps) { par_partial[out_g + o * taps + k0 + k] = acc[m][k]; }
        }
    }
}

// ---- backward to the parameters at stride 1, for filters of at most MAX_TAPS taps ---------
// An invocation computes B output channels x every tap (i, j) of one input channel c (or one
// bias), over the samples of its group, with the same partial sums as backward_params. It
// walks each output row keeping the k_h x k_w input window under the filter in registers:
// one step along the row loads k_h new values and B of dy for B k_h k_w multiply-adds, where
// backward_params loads 2 B values for B B. KH and KW are pipeline constants, so the window
// and the accumulators are registers.

override KH: u32 = 3u;
override KW: u32 = 3u;

@compute @workgroup_size(WG)
fn backward_params_sliding(@builtin(global_invocation_id) gid: vec3<u32>,
                           @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let weight_blocks = blocks(P.out_c) * P.in_c;
    let per_group = weight_blocks + P.has_bias * P.out_c;
    if (t >= per_group * P.groups) { return; }
    let r = t % per_group;
    let g = t / per_group;
    if (r >= weight_blocks) {
        store_bias_partial(g, r - weight_blocks);
        return;
    }
    let c = r % P.in_c;
    let o0 = (r / P.in_c) * B;
    let n0 = g * P.group_size;
    let n1 = min(n0 + P.group_size, P.batch);
    let out_plane = P.out_h * P.out_w;
    var dy_of: array<u32, B>;
    for (var m = 0u; m < B; m++) { dy_of[m] = (min(o0 + m, P.out_c - 1u) - o0) * out_plane; }
    // acc[i * KW + j] holds the B output channels at tap (i, j); win[i * KW + j] is
    // x[n, c, p + i - pad_h, q + j - pad_w] for the current output pixel (p, q).
    var acc: array<vec4<f32>, MAX_TAPS>;
    var win: array<f32, MAX_TAPS>;
    for (var n = n0; n < n1; n++) {
        let plane = (n * P.in_c + c) * P.in_h * P.in_w;
        let dy_base = (n * P.out_c + o0) * out_plane;
        for (var p = 0u; p < P.out_h; p++) {
            // The window of the pixel left of the row (q = -1), less its first column.
            for (var i = 0u; i < KH; i++) {
                let iy = i32(p + i) - P.pad_h;
                for (var j = 1u; j < KW; j++) {
                    win[i * KW + j] = x_value(plane, iy, i32(j) - 1 - P.pad_w);
                }
            }
            for (var q = 0u; q < P.out_w; q++) {
                for (var i = 0u; i < KH; i++) {
                    for (var j = 0u; j + 1u < KW; j++) { win[i * KW + j] = win[i * KW + j + 1u]; }
                    let iy = i32(p + i) - P.pad_h;
                    win[i * KW + KW - 1u] = x_value(plane, iy, i32(q + KW - 1u) - P.pad_w);
                }
                let at = dy_base + p * P.out_w + q;
                var d: vec4<f32>;
                for (var m = 0u; m < B; m++) { d[m] = par_dy[at + dy_of[m]]; }
                for (var k = 0u; k < KH * KW; k++) { acc[k] += d * win[k]; }
            }
        }
    }
    let taps = P.in_c * KH * KW;
    let out_g = g * (P.out_c * taps + P.has_bias * P.out_c);
    for (var m = 0u; m < B; m++) {
        let o = o0 + m;
        if (o >= P.out_c) { break; }
        for (var k = 0u; k < KH * KW; k++) {
            par_partial[out_g + o * taps + c * KH * KW + k] = acc[k][m];
        }
    }
}
