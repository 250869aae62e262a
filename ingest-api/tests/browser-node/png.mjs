// A noisy RGB PNG (nearly incompressible, so the file is about as large as its pixels) over a
// gradient, so its thumbnail shows something. No dependencies: zlib and a CRC-32.

import { deflateSync } from 'node:zlib';

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buffer) {
  let c = 0xffffffff;
  for (const byte of buffer) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}
export function noisyPng(width, height) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const raw = Buffer.alloc((width * 3 + 1) * height);
  let x = 0x9e3779b9;
  for (let row = 0; row < height; row += 1) {
    const start = row * (width * 3 + 1);
    raw[start] = 0; // filter: none
    for (let i = 1; i <= width * 3; i += 1) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5; // xorshift32
      // Noise over a gradient, so the thumbnail shows something.
      raw[start + i] = ((x & 0x3f) + ((i % 3 === 0 ? row : i / 3) * 190) / Math.max(width, height)) & 0xff;
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(raw, { level: 1 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
