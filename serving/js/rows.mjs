// Weighted sums of a matrix's rows in WebAssembly (128-bit SIMD), for the text family's projection and the
// embedding's pooling: out[j] + row_0[j] * w_0 + row_1[j] * w_1 + ..., each sum in row order as the plain double
// loop adds, so the bits are the same (the conformance and embedding tests compare them with Python). The
// matrix is copied once into the instance's memory; a call copies its row indices and weights there. Source:
// rows.wat (why, and how to rebuild this string).

const WASM = "AGFzbQEAAAABEgJgBn9/f39/fwBgBX9/f39/AAMDAgABBQMBAAEHHgMGbWVtb3J5AgAHZjY0cm93cwAAB2YzMnJvd3MAAQrbBQLqAgQEfwF7AXwEewJAA0AgBkEIaiAFSw0BIAEgBkEDdGohCSAJ/QAEACEMIAn9AAQQIQ0gCf0ABCAhDiAJ/QAEMCEPQQAhBwJAA0AgByAETw0BIAAgAiAHQQJ0aigCACAFbCAGakEDdGohCCADIAdBA3RqKwMA/RQhCiAMIAj9AAQAIAr98gH98AEhDCANIAj9AAQQIAr98gH98AEhDSAOIAj9AAQgIAr98gH98AEhDiAPIAj9AAQwIAr98gH98AEhDyAHQQFqIQcMAAsLIAkgDP0LBAAgCSAN/QsEECAJIA79CwQgIAkgD/0LBDAgBkEIaiEGDAALCwJAA0AgBiAFTw0BIAEgBkEDdGohCSAJKwMAIQtBACEHAkADQCAHIARPDQEgCyAAIAIgB0ECdGooAgAgBWwgBmpBA3RqKwMAIAMgB0EDdGorAwCioCELIAdBAWohBwwACwsgCSALOQMAIAZBAWohBgwACwsL7AIEBH8CewF8BHsCQANAIAVBCGogBEsNASABIAVBA3RqIQggCP0ABAAhDCAI/QAEECENIAj9AAQgIQ4gCP0ABDAhD0EAIQYCQANAIAYgA08NASAAIAIgBkECdGooAgAgBGwgBWpBAnRqIQcgB/0ABAAhCSAH/QAEECEKIAwgCf1f/fABIQwgDSAJIAn9DQgJCgsMDQ4PAAECAwQFBgf9X/3wASENIA4gCv1f/fABIQ4gDyAKIAr9DQgJCgsMDQ4PAAECAwQFBgf9X/3wASEPIAZBAWohBgwACwsgCCAM/QsEACAIIA39CwQQIAggDv0LBCAgCCAP/QsEMCAFQQhqIQUMAAsLAkADQCAFIARPDQEgASAFQQN0aiEIIAgrAwAhC0EAIQYCQANAIAYgA08NASALIAAgAiAGQQJ0aigCACAEbCAFakECdGoqAgC7oCELIAZBAWohBgwACwsgCCALOQMAIAVBAWohBQwACwsL";
const module = new WebAssembly.Module(Buffer.from(WASM, "base64"));
const PAGE = 65536;
const align = (n) => (n + 15) & ~15;

/** A float64 or float32 matrix of rows of `k` values, held in its own WebAssembly memory. */
export class RowSums {
  constructor(matrix, k) {
    if (!(matrix instanceof Float64Array || matrix instanceof Float32Array) || !(k >= 1) || matrix.length % k !== 0) {
      throw new TypeError("RowSums needs a Float64Array or Float32Array of rows of k >= 1 values");
    }
    this.k = k;
    this.wide = matrix instanceof Float64Array;
    this.exports = new WebAssembly.Instance(module).exports;
    this.outAt = align(matrix.byteLength);
    this.rowsAt = align(this.outAt + 8 * k);
    this._room(0);
    new Uint8Array(this.exports.memory.buffer, 0, matrix.byteLength).set(new Uint8Array(matrix.buffer, matrix.byteOffset, matrix.byteLength));
  }

  /** Memory for `n` row indices and weights after the matrix and the sums (grown as needed, never shrunk);
   * returns where the weights go. */
  _room(n) {
    const wAt = align(this.rowsAt + 4 * n);
    const memory = this.exports.memory;
    if (wAt + 8 * n > memory.buffer.byteLength) memory.grow(Math.ceil((wAt + 8 * n - memory.buffer.byteLength) / PAGE));
    if (this._f64?.buffer !== memory.buffer) {
      this._f64 = new Float64Array(memory.buffer);
      this._i32 = new Int32Array(memory.buffer);
    }
    return wAt;
  }

  /** out[j] += sum over i < n of row rows[i]'s j-th value x weights[i] (weights null: each 1), in order of i.
   * Every index must be a row of the matrix (the caller's buckets and token ids are). */
  add(out, rows, weights, n) {
    const { k } = this;
    const wAt = this._room(n);
    const f64 = this._f64, i32 = this._i32;
    f64.set(out.subarray(0, k), this.outAt >> 3);
    i32.set(rows.length === n ? rows : rows.subarray(0, n), this.rowsAt >> 2);
    if (this.wide) {
      f64.set(weights.length === n ? weights : weights.subarray(0, n), wAt >> 3);
      this.exports.f64rows(0, this.outAt, this.rowsAt, wAt, n, k);
    } else {
      this.exports.f32rows(0, this.outAt, this.rowsAt, n, k);
    }
    out.set(f64.subarray(this.outAt >> 3, (this.outAt >> 3) + k));
    return out;
  }
}
