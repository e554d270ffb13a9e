// ggml's scale searches (ggml-quants.c), ported operation by operation in float32 (see ggml-rounding.ts):
//
//   makeQkx   make_qkx2_quants / make_qkx3_quants: codes 0..nmax with a scale and a minimum ≤ 0, by weighted
//             least squares over nstep + 1 candidate scales (rmin + rdelta·is + nmax) / (max − min)
//   makeQx    make_qx_quants, rmse_type 1: signed codes −nmax..nmax−1 with one scale, 19 candidate scales
//             −(nmax + 0.1·is) / max, weights x² or an importance
//   makeQp    make_qp_quants: non-negative codes 0..nmax for non-negative values (Q4_K's sub-scales with an
//             importance matrix), 9 candidate scales then up to 5 passes of coordinate descent
//
// Each writes codes into L[lo, lo + n) and returns the float32 scale (and minimum).

import { clampInt, nearestInt, toUint8 } from './ggml-rounding.js';

const f = Math.fround;
const nearest = nearestInt;
const clamp = clampInt;

export const GROUP_MAX_EPS = f(1e-15);
const TENTH = f(0.1);

export interface QkxOptions {
  readonly rmin: number;
  readonly rdelta: number;
  readonly nstep: number;
  /** make_qkx3_quants: all-equal input is `max <= min` (make_qkx2: `max == min`) */
  readonly x3: boolean;
}

/** make_qkx2_quants / make_qkx3_quants with weights w[0, n) (use_mad false) */
export function makeQkx(n: number, nmax: number, x: ArrayLike<number>, xo: number, w: ArrayLike<number>, wo: number, L: Int8Array, lo: number, o: QkxOptions): { scale: number; min: number } {
  let min = x[xo] as number;
  let max = min;
  let sumW = w[wo] as number;
  let sumX = f(sumW * min);
  for (let i = 1; i < n; i++) {
    const v = x[xo + i] as number;
    if (v < min) min = v;
    if (v > max) max = v;
    sumW = f(sumW + (w[wo + i] as number));
    sumX = f(sumX + f((w[wo + i] as number) * v));
  }
  if (min > 0) min = 0;
  if (o.x3 ? max <= min : max === min) {
    L.fill(0, lo, lo + n);
    return { scale: 0, min: -min };
  }
  let iscale = f(nmax / f(max - min));
  let scale = f(1 / iscale);
  let best = 0;
  for (let i = 0; i < n; i++) {
    const v = x[xo + i] as number;
    const l = clamp(nearest(f(iscale * f(v - min))), 0, nmax);
    L[lo + i] = l;
    const diff = f(f(f(scale * l) + min) - v);
    best = f(best + f((w[wo + i] as number) * f(diff * diff)));
  }
  const aux = new Int8Array(n);
  for (let is = 0; is <= o.nstep; is++) {
    iscale = f(f(f(o.rmin + f(o.rdelta * is)) + nmax) / f(max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const v = x[xo + i] as number;
      const l = clamp(nearest(f(iscale * f(v - min))), 0, nmax);
      aux[i] = l;
      const wl = f((w[wo + i] as number) * l);
      sumL = f(sumL + wl);
      sumL2 = f(sumL2 + f(wl * l));
      sumXL = f(sumXL + f(wl * v));
    }
    const D = f(f(sumW * sumL2) - f(sumL * sumL));
    if (!(D > 0)) continue;
    let thisScale = f(f(f(sumW * sumXL) - f(sumX * sumL)) / D);
    let thisMin = f(f(f(sumL2 * sumX) - f(sumL * sumXL)) / D);
    if (thisMin > 0) {
      thisMin = 0;
      thisScale = f(sumXL / sumL2);
    }
    let err = 0;
    for (let i = 0; i < n; i++) {
      const diff = f(f(f(thisScale * (aux[i] as number)) + thisMin) - (x[xo + i] as number));
      err = f(err + f((w[wo + i] as number) * f(diff * diff)));
    }
    if (err < best) {
      L.set(aux, lo);
      best = err;
      scale = thisScale;
      min = thisMin;
    }
  }
  return { scale, min: -min };
}

/** make_qx_quants with rmse_type 1: weights x² (qw undefined) or qw[qo, qo + n); L = code + nmax */
export function makeQx(n: number, nmax: number, x: ArrayLike<number>, xo: number, L: Int8Array, lo: number, qw?: ArrayLike<number>, qo = 0): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i] as number);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i] as number;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, lo, lo + n);
    return 0;
  }
  const sums = (iscale: number, write: boolean): [number, number] => {
    let sumlx = 0;
    let suml2 = 0;
    for (let i = 0; i < n; i++) {
      const v = x[xo + i] as number;
      const l = clamp(nearest(f(iscale * v)), -nmax, nmax - 1);
      if (write) L[lo + i] = l + nmax;
      const w = qw !== undefined ? (qw[qo + i] as number) : f(v * v);
      sumlx = f(sumlx + f(f(w * v) * l));
      suml2 = f(suml2 + f(f(w * l) * l));
    }
    return [sumlx, suml2];
  };
  let [sumlx, suml2] = sums(f(-nmax / max), true);
  let scale = suml2 !== 0 ? f(sumlx / suml2) : 0;
  let best = f(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    const iscale = f(-f(nmax + f(TENTH * is)) / max);
    [sumlx, suml2] = sums(iscale, false);
    if (suml2 > 0 && f(sumlx * sumlx) > f(best * suml2)) {
      sums(iscale, true);
      scale = f(sumlx / suml2);
      best = f(scale * sumlx);
    }
  }
  return scale;
}

/** make_qp_quants: codes 0..nmax (as uint8) of non-negative x[0, n) under importance qw */
export function makeQp(n: number, nmax: number, x: ArrayLike<number>, L: Int8Array, qw: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < n; i++) max = Math.max(max, x[i] as number);
  if (max < GROUP_MAX_EPS) {
    L.fill(0, 0, n);
    return 0;
  }
  let iscale = f(nmax / max);
  const Lu = new Uint8Array(n);
  for (let i = 0; i < n; i++) Lu[i] = toUint8(nearest(f(iscale * (x[i] as number))));
  const scale = f(1 / iscale);
  let bestMse = 0;
  for (let i = 0; i < n; i++) {
    const diff = f((x[i] as number) - f(scale * (Lu[i] as number)));
    bestMse = f(bestMse + f(f((qw[i] as number) * diff) * diff));
  }
  for (let is = -4; is <= 4; is++) {
    if (is === 0) continue;
    const iscaleIs = f(f(f(TENTH * is) + nmax) / max);
    const scaleIs = f(1 / iscaleIs);
    let mse = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.min(nmax, nearest(f(iscaleIs * (x[i] as number))));
      const diff = f((x[i] as number) - f(scaleIs * l));
      mse = f(mse + f(f((qw[i] as number) * diff) * diff));
    }
    if (mse < bestMse) {
      bestMse = mse;
      iscale = iscaleIs;
    }
  }
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.min(nmax, nearest(f(iscale * (x[i] as number))));
    Lu[i] = toUint8(l);
    const w = qw[i] as number;
    sumlx = f(sumlx + f(f(w * (x[i] as number)) * l));
    suml2 = f(suml2 + f(f(w * l) * l));
  }
  for (let itry = 0; itry < 5; itry++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const w = qw[i] as number;
      const v = x[i] as number;
      const li = Lu[i] as number;
      let slx = f(sumlx - f(f(w * v) * li));
      let sl2 = f(suml2 - f(f(w * li) * li));
      if (slx > 0 && sl2 > 0) {
        const nl = Math.min(nmax, nearest(f(f(v * sl2) / slx)));
        if (nl !== li) {
          slx = f(slx + f(f(w * v) * nl));
          sl2 = f(sl2 + f(f(w * nl) * nl));
          if (f(f(slx * slx) * suml2) > f(f(sumlx * sumlx) * sl2)) {
            Lu[i] = toUint8(nl);
            sumlx = slx;
            suml2 = sl2;
            changed++;
          }
        }
      }
    }
    if (changed === 0) break;
  }
  for (let i = 0; i < n; i++) L[i] = Lu[i] as number;
  return suml2 > 0 ? f(sumlx / suml2) : 0;
}
