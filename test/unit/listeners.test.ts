// Who listens on a port, from the kernel's socket tables (efsctl takeover, the bench's start-up figure).
import { expect } from 'chai';
import { listeningPorts } from '../../cli/listeners.js';

describe('listening ports', () => {
  it('reads the port of each LISTEN socket of /proc/net/tcp and tcp6, and skips the header and other states', () => {
    const tcp = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0100007F:4E8C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1060 1 0 100 0 0 10 0',
      '   1: 0100007F:4E8D 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 1061 1 0 20 4 30 10 -1',
      '   2: 00000000:006F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9054 1 0 100 0 0 10 0',
      '',
    ].join('\n');
    expect(listeningPorts(tcp)).to.deep.equal([20108, 111]);
    const tcp6 = [
      '  sl  local_address                         remote_address                        st tx_queue rx_queue',
      '   0: 00000000000000000000000000000000:0801 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000',
    ].join('\n');
    expect(listeningPorts(tcp6)).to.deep.equal([2049]);
    expect(listeningPorts('')).to.deep.equal([]);
  });
});
