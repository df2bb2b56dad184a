// Runs an ONNX model with ONNX Runtime (npm's onnxruntime-node, CPU) on inputs from a
// file, for the export tests.
//   node tools/onnx_run.js MODEL.onnx IN.f32 OUT.f32 D0 D1 ...
// IN.f32 holds float32 values (little-endian) of the input shape (D0, D1, ...); the
// first output goes to OUT.f32, and its names and shape are printed as one JSON line.
// `node tools/onnx_run.js --check` exits 0 when onnxruntime-node loads.
'use strict';
const fs = require('fs');
let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  console.error('onnx_run: onnxruntime-node is missing (npm install --ignore-scripts onnxruntime-node): ' + e.message);
  process.exit(3);
}
if (process.argv[2] === '--check') process.exit(0);

async function main() {
  const [model, input, output, ...dims] = process.argv.slice(2);
  if (!model || !input || !output || !dims.length) throw new Error('usage: onnx_run.js MODEL IN OUT D0 [D1 ...]');
  const shape = dims.map(Number);
  const buf = fs.readFileSync(input);
  const x = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
  const session = await ort.InferenceSession.create(model, {graphOptimizationLevel: 'all', intraOpNumThreads: 1});
  const result = await session.run({[session.inputNames[0]]: new ort.Tensor('float32', x, shape)});
  const y = result[session.outputNames[0]];
  fs.writeFileSync(output, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
  console.log(JSON.stringify({input: session.inputNames[0], output: session.outputNames[0], dims: y.dims}));
}
main().catch((e) => {
  console.error('onnx_run: ' + e.message);
  process.exit(1);
});
