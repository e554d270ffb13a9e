// Cross-stage rules the schema cannot express: each fixture loads, then fails (or warns) at plan time with a
// diagnostic pointing at the stage or field, printed with its squiggle.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { printDiagnostics } from '../../src/diag/print.js';
import { compilePlan } from '../../src/plan/compile.js';
import { loadRecipe } from '../../src/recipe/load.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const fixtures = join(repo, 'test/fixtures/recipes/plan');

function planned(name: string): { ok: boolean; printed: string } {
  const loaded = loadRecipe(join(fixtures, `${name}.yaml`));
  if (!loaded.ok) throw new Error(`${name} should load: ${loaded.error.map((d) => d.message).join('; ')}`);
  const plan = compilePlan(loaded.value);
  const diagnostics = plan.ok ? plan.value.warnings : plan.error;
  return { ok: plan.ok, printed: `\n${printDiagnostics(diagnostics, { cwd: repo })}` };
}

describe('plan errors', () => {
  test('every plan fixture has a test', () => {
    const tested = ['smoothquant-without-quantizer', 'awq-without-scheme-last', 'missing-calibration', 'quantized-twice', 'targets-match-nothing', 'seq-len-too-long', 'lm-head-targeted', 'autoround-nsamples', 'bad-mapping', 'actorder-on-channel', 'awq-float-scheme', 'mse-on-float', 'onnx-float-output', 'static-inputs-without-calibration', 'actorder-group-on-mxfp4', 'awq-gguf-scheme', 'gguf-scheme-outputs', 'gguf-output-of-w4a16', 'calibration-shards-autoround'];
    expect(readdirSync(fixtures).map((f) => f.replace(/\.yaml$/, '')).sort()).toEqual([...tested].sort());
  });

  test('smoothquant with no quantizing stage after it', () => {
    const r = planned('smoothquant-without-quantizer');
    expect(r.ok).toBe(false);
    expect(r.printed).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/plan/smoothquant-without-quantizer.yaml:5:5 smoothquant only rescales weights; add a quantizing stage after it (rtn, gptq, autoround) or give it a scheme
            - kind: smoothquant
              ~~~~~~~~~~~~~~~~~
      "
    `);
  });

  test('awq without a scheme as the last stage', () => {
    const r = planned('awq-without-scheme-last');
    expect(r.ok).toBe(false);
    expect(r.printed).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/plan/awq-without-scheme-last.yaml:5:5 awq without scheme or config_groups only rescales weights; add a quantizing stage after it (rtn, gptq, autoround) or give it a scheme
            - kind: awq
              ~~~~~~~~~
      "
    `);
  });

  test('a calibrating stage without a calibration block', () => {
    const r = planned('missing-calibration');
    expect(r.ok).toBe(false);
    expect(r.printed).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/plan/missing-calibration.yaml:4:5 stage "gptq" needs calibration data, but the recipe has no calibration block
            - kind: gptq
              ~~~~~~~~~~
      "
    `);
  });

  test('two stages quantizing the same modules', () => {
    const r = planned('quantized-twice');
    expect(r.ok).toBe(false);
    expect(r.printed).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/plan/quantized-twice.yaml:7:5 modules already quantized by an earlier stage: model.layers.0.self_attn.q_proj (stage 1), model.layers.0.self_attn.k_proj (stage 1), model.layers.0.self_attn.v_proj (stage 1) and 25 more; a module is quantized once (use ignore)
            - kind: gptq
              ~~~~~~~~~~
      "
    `);
  });

  test('targets and ignore patterns that match no module', () => {
    const r = planned('targets-match-nothing');
    expect(r.ok).toBe(false);
    expect(r.printed).toMatchInlineSnapshot(`
      "
      ⚠️ test/fixtures/recipes/plan/targets-match-nothing.yaml:7:14 target "re:.*attention" matches no module of the model
              targets: ["re:.*attention"]
                       ~~~~~~~~~~~~~~~~~~
      ⚠️ test/fixtures/recipes/plan/targets-match-nothing.yaml:8:13 ignore pattern "re:.*nothing" matches no module of the model
              ignore: [lm_head, "re:.*nothing"]
                      ~~~~~~~~~~~~~~~~~~~~~~~~~
      ❌ test/fixtures/recipes/plan/targets-match-nothing.yaml:7:14 stage 1: rtn selects no Linear module to quantize
              targets: ["re:.*attention"]
                       ~~~~~~~~~~~~~~~~~~
      "
    `);
  });

  test('a seq_len longer than the model context', () => {
    const r = planned('seq-len-too-long');
    expect(r.ok).toBe(false);
    expect(r.printed).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/plan/seq-len-too-long.yaml:3:66 seq_len 4096 exceeds the model's max_position_embeddings 512
          calibration: { dataset: "model:calib.txt", samples: 16, seq_len: 4096 }
                                                                           ~~~~
      "
    `);
  });

  test('lm_head named as a target', () => {
    const r = planned('lm-head-targeted');
    expect(r.ok).toBe(false);
    expect(r.printed).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/plan/lm-head-targeted.yaml:7:14 module "lm_head" is outside the decoder layers; quantforge quantizes decoder-layer Linears only (add it to ignore)
              targets: [Linear, lm_head]
                       ~~~~~~~~~~~~~~~~~
      "
    `);
  });

  test('autoround nsamples above the calibration samples', () => {
    const r = planned('autoround-nsamples');
    expect(r.ok).toBe(false);
    expect(r.printed).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/plan/autoround-nsamples.yaml:7:15 autoround nsamples 64 exceeds calibration.samples 16
              nsamples: 64
                        ~~
      "
    `);
  });

  test('a custom mapping whose smooth layer matches nothing', () => {
    const r = planned('bad-mapping');
    expect(r.ok).toBe(false);
    expect(r.printed).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/plan/bad-mapping.yaml:7:9 smooth_layer "re:.*missing_norm" should match exactly one module of a decoder layer, matched 0
                - smooth_layer: "re:.*missing_norm"
                  ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
      "
    `);
  });

  test('actorder on a per-channel weight scheme', () => {
    const r = planned('actorder-on-channel');
    expect(r.ok).toBe(false);
    expect(r.printed).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/plan/actorder-on-channel.yaml:7:7 group_0.weights: actorder "group" requires strategy "group", found "channel"
                group_0:
                ~~~~~~~~
      "
    `);
  });

  test('awq with a float scheme names the method, the scheme and why', () => {
    const r = planned('awq-float-scheme');
    expect(r.ok).toBe(false);
    expect(r.printed).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/plan/awq-float-scheme.yaml:6:13 awq cannot quantize with NVFP4: 4-bit float weights are not supported: AWQ scores its candidate scales with integer min-max fake quantization (llm-compressor 0.8's AWQModifier)
              scheme: NVFP4
                      ~~~~~
      ❌ test/fixtures/recipes/plan/awq-float-scheme.yaml:6:13 awq cannot quantize with NVFP4: static input ranges (FP8, NVFP4 activations) are calibrated by rtn and gptq only
              scheme: NVFP4
                      ~~~~~
      "
    `);
  });

  test('GGUF schemes: awq and autoround refuse the K-quants, and no observer may choose other qparams than the blocks', () => {
    const r = planned('awq-gguf-scheme');
    expect(r.ok).toBe(false);
    expect(r.printed).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/plan/awq-gguf-scheme.yaml:6:13 awq cannot quantize with GGUF_Q4_K: GGUF Q4_K blocks are quantized by rtn and gptq only (awq takes Q8_0, Q4_0, Q4_1, Q5_0): its candidate losses need the block quantizer as graph ops, and the K-quants' sub-scale searches (make_qkx2/make_qx_quants) are iterative loops not built as graph ops
              scheme: GGUF_Q4_K
                      ~~~~~~~~~
      ❌ test/fixtures/recipes/plan/awq-gguf-scheme.yaml:9:13 rtn cannot quantize with GGUF_Q8_0: GGUF blocks take ggml's own qparams; the "mse" observer does not apply (leave observer unset)
              scheme: GGUF_Q8_0
                      ~~~~~~~~~
      ❌ test/fixtures/recipes/plan/awq-gguf-scheme.yaml:13:13 autoround cannot quantize with GGUF_Q4_K: GGUF Q4_K blocks are quantized by rtn and gptq only (autoround takes Q8_0, Q4_0, Q4_1, Q5_0): its block graph computes a block's qparams from the learned min/max factors in one pass; the K-quants' 6-bit sub-scales and sub-minimums come from ggml's iterative searches (make_qkx2_quants, make_qx_quants), which are not built as graph ops
              scheme: GGUF_Q4_K
                      ~~~~~~~~~
      "
    `);
  });

  test('a GGUF scheme with the compressed-tensors output; the gguf output requantizes W4A16 (a warning) and refuses FP8', () => {
    const a = planned('gguf-scheme-outputs');
    expect(a.ok).toBe(false);
    expect(a.printed).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/plan/gguf-scheme-outputs.yaml:7:5 compressed-tensors output cannot write model.layers.0.self_attn.q_proj: GGUF_Q4_K stores ggml blocks (float16 scales, 6-bit sub-scales), which compressed-tensors has no format for; write it with the gguf output, or quantize with W4A16 / W4A16_ASYM / W8A16 for compressed-tensors
            - { format: compressed-tensors, path: out/ct }
              ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
          test/fixtures/recipes/plan/gguf-scheme-outputs.yaml:4:5 model.layers.0.self_attn.q_proj is quantized by stage 1
                - kind: rtn
                  ~~~~~~~~~
      "
    `);
    const b = planned('gguf-output-of-w4a16');
    expect(b.ok).toBe(false);
    expect(b.printed).toMatchInlineSnapshot(`
      "
      ⚠️ test/fixtures/recipes/plan/gguf-output-of-w4a16.yaml:11:5 gguf output: 4-bit int symmetric group 128 weights are requantized to Q4_0 blocks of 32 at their own scales stored as float16 (blocks whose scale is not one source group take ggml's rounding; in_features not a multiple of 32 stay unquantized), so the file is not exactly the evaluated fake-quantized model (measured: its perplexity within 0.03 % of the fake-quantized model's on stories260K and wiki-llama-8m, docs/gguf.md "Requantizing"); quantize with GGUF_Q4_0 to have the method optimise the stored blocks
            - { format: gguf, path: out/gguf }
              ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
      ❌ test/fixtures/recipes/plan/gguf-output-of-w4a16.yaml:11:5 gguf output cannot write model.layers.0.mlp.gate_proj: the gguf output writes GGUF block schemes (GGUF_Q8_0, GGUF_Q4_0, GGUF_Q4_1, GGUF_Q5_0, GGUF_Q4_K, GGUF_Q6_K) and requantizes integer schemes of up to 8 bits; 8-bit float weights have no block type: quantize with a GGUF_* scheme
            - { format: gguf, path: out/gguf }
              ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
          test/fixtures/recipes/plan/gguf-output-of-w4a16.yaml:7:5 model.layers.0.mlp.gate_proj is quantized by stage 2
                - kind: rtn
                  ~~~~~~~~~
      "
    `);
  });

  test('the mse observer on float weights', () => {
    const r = planned('mse-on-float');
    expect(r.ok).toBe(false);
    expect(r.printed).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/plan/mse-on-float.yaml:5:13 rtn cannot quantize with FP8_DYNAMIC: the mse observer searches integer grids; float weights take the minmax observer
              scheme: FP8_DYNAMIC
                      ~~~~~~~~~~~
      "
    `);
  });

  test('an onnx output of FP8 weights names the outputs that can write them', () => {
    const r = planned('onnx-float-output');
    expect(r.ok).toBe(false);
    expect(r.printed).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/plan/onnx-float-output.yaml:8:5 onnx output cannot write model.layers.0.self_attn.q_proj: onnxruntime's CPU provider has no float8 matmul, so 8-bit float weights (FP8, NVFP4, MXFP4 schemes) are written by the compressed-tensors output only; the onnx output takes W4A16, W4A16_ASYM, W8A16, W8A8, W4A8 and int config groups
            - { format: onnx, path: out/onnx }
              ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
          test/fixtures/recipes/plan/onnx-float-output.yaml:4:5 model.layers.0.self_attn.q_proj is quantized by stage 1
                - kind: rtn
                  ~~~~~~~~~
      "
    `);
  });

  test('static input ranges (FP8) need calibration data, dynamic ones (FP8_DYNAMIC) do not', () => {
    const r = planned('static-inputs-without-calibration');
    expect(r.ok).toBe(false);
    expect(r.printed).toContain('stage "rtn" needs calibration data');
    expect(planned('mse-on-float').printed).not.toContain('needs calibration data');
  });

  test('gptq actorder group with fp4 groups: the format stores no g_idx', () => {
    const r = planned('actorder-group-on-mxfp4');
    expect(r.ok).toBe(false);
    expect(r.printed).toContain('gptq cannot quantize with MXFP4A16: actorder "group" records weight_g_idx');
  });

  test('calibration_shards above 1 with a stage that does not shard its calibration', () => {
    const r = planned('calibration-shards-autoround');
    expect(r.ok).toBe(false);
    expect(r.printed).toMatchInlineSnapshot(`
      "
      ❌ test/fixtures/recipes/plan/calibration-shards-autoround.yaml:4:33 calibration_shards 2: data-parallel calibration is implemented for gptq, awq, smoothquant only, and stage 1 (autoround) calibrates: AutoRound's signSGD iterations each start from the rounding the previous one left, so a shard of its batches cannot be a step of its own: splitting a batch across machines needs an all-reduce of the gradients in every iteration, as llm-compressor's AutoRound DDP does, not one reduce per layer; use calibration_shards: 1
          parallel: { calibration_shards: 2 }
                                          ~
          test/fixtures/recipes/plan/calibration-shards-autoround.yaml:6:5 stage "autoround" here
                - kind: autoround
                  ~~~~~~~~~~~~~~~
      "
    `);
  });
});
