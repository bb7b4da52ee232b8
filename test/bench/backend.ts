// The plain TCP service behind every benchmark path. The first byte of a
// connection picks the mode:
//   U <u64 length>  read length bytes, then answer one byte   (upload)
//   D <u64 length>  send length bytes, then close               (download)
//   R               requests of <u32 length><payload>, each answered with 200 bytes (small RPCs)
//   C               answer one byte at once                      (connection setup)
import { createServer, type Socket } from 'node:net';

const REPLY = Buffer.alloc(200, 0x72);
const BLOCK = Buffer.alloc(1 << 20, 0x64);
const ACK = Buffer.from('K');

function serve(sock: Socket): void {
  sock.setNoDelay(true);
  let mode = 0;
  let header = Buffer.alloc(0);
  let remaining = 0n;
  // RPC framing state: bytes still to skip in the current request, or -1 while reading its length.
  let need = -1;
  let lenBuf = Buffer.alloc(0);

  const download = (total: bigint): void => {
    let left = total;
    const pump = (): void => {
      while (left > 0n) {
        const n = left < BigInt(BLOCK.length) ? Number(left) : BLOCK.length;
        left -= BigInt(n);
        if (!sock.write(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n))) {
          sock.once('drain', pump);
          return;
        }
      }
      sock.end();
    };
    pump();
  };

  sock.on('data', (chunk: Buffer) => {
    let data = chunk;
    if (mode === 0) {
      mode = data[0] as number;
      data = data.subarray(1);
      if (mode === 0x43 /* C */) {
        sock.write(ACK);
        return;
      }
    }
    if (mode === 0x55 /* U */ || mode === 0x44 /* D */) {
      if (header.length < 8) {
        const take = Math.min(8 - header.length, data.length);
        header = Buffer.concat([header, data.subarray(0, take)]);
        data = data.subarray(take);
        if (header.length < 8) return;
        remaining = header.readBigUInt64BE(0);
        if (mode === 0x44) {
          download(remaining);
          return;
        }
      }
      remaining -= BigInt(data.length);
      if (remaining === 0n) sock.write(ACK);
      return;
    }
    if (mode === 0x52 /* R */) {
      while (data.length > 0) {
        if (need < 0) {
          const take = Math.min(4 - lenBuf.length, data.length);
          lenBuf = Buffer.concat([lenBuf, data.subarray(0, take)]);
          data = data.subarray(take);
          if (lenBuf.length < 4) return;
          need = lenBuf.readUInt32BE(0);
          lenBuf = Buffer.alloc(0);
        }
        const take = Math.min(need, data.length);
        need -= take;
        data = data.subarray(take);
        if (need === 0) {
          need = -1;
          sock.write(REPLY);
        }
      }
    }
  });
  sock.on('error', () => sock.destroy());
}

const port = Number(process.argv[2]);
createServer({ allowHalfOpen: false }, serve).listen({ host: '127.0.0.1', port, backlog: 4096 }, () => {
  process.stdout.write('ready\n');
});
