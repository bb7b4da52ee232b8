// The plain TCP service behind every benchmark path. The first byte of a
// connection picks the mode:
//   U <u64 total> <u64 slice>  read total bytes, answering one byte after each slice (upload)
//   D <u64 total> <u64 slice>  send one slice for each N the client writes, then close (download)
//   R               requests of <u32 length><payload>, each answered with 200 bytes (small RPCs)
//   C               answer one byte at once                      (connection setup)
// Slices let the bench alternate the paths' bulk transfers in turns on one connection each.
import { createServer, type Socket } from 'node:net';

const REPLY = Buffer.alloc(200, 0x72);
const BLOCK = Buffer.alloc(1 << 20, 0x64);
const ACK = Buffer.from('K');

function serve(sock: Socket): void {
  sock.setNoDelay(true);
  let mode = 0;
  let header = Buffer.alloc(0);
  let total = 0;
  let slice = 0;
  // Upload: bytes received so far, and the count at which the next acknowledgement is due (0: done).
  let received = 0;
  let nextAck = 0;
  // Download: bytes not yet sent.
  let left = 0;
  // RPC framing state: bytes still to skip in the current request, or -1 while reading its length.
  let need = -1;
  let lenBuf = Buffer.alloc(0);

  // One slice per request; requests that arrive while a slice is still going out wait their turn.
  let requested = 0;
  let sending = false;
  const sendSlice = (): void => {
    if (sending || requested === 0 || left === 0) return;
    requested--;
    sending = true;
    let sliceLeft = Math.min(slice, left);
    const pump = (): void => {
      while (sliceLeft > 0) {
        const n = Math.min(sliceLeft, BLOCK.length);
        sliceLeft -= n;
        left -= n;
        if (!sock.write(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n))) {
          sock.once('drain', pump);
          return;
        }
      }
      sending = false;
      if (left === 0) sock.end();
      else sendSlice();
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
      if (header.length < 16) {
        const take = Math.min(16 - header.length, data.length);
        header = Buffer.concat([header, data.subarray(0, take)]);
        data = data.subarray(take);
        if (header.length < 16) return;
        total = Number(header.readBigUInt64BE(0));
        slice = Number(header.readBigUInt64BE(8));
        left = total;
        nextAck = Math.min(slice, total);
      }
      if (mode === 0x44) {
        requested += data.length; // each byte is one N
        sendSlice();
        return;
      }
      received += data.length;
      while (nextAck > 0 && received >= nextAck) {
        sock.write(ACK);
        nextAck = nextAck === total ? 0 : Math.min(nextAck + slice, total);
      }
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
