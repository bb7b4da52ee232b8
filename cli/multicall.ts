// The single installed binary (see packaging/): efs-relayd, with efsctl and
// mount.efs as links to it. The name it was started under picks the program.
import '../daemon/inspector-guard.js'; // first: no debugger on SIGUSR1 (see the module)
import { basename } from 'node:path';

const name = basename(process.argv0);
if (name === 'efsctl') void import('./efsctl.js');
else if (name === 'mount.efs') void import('./mount-efs.js');
else void import('../daemon/main.js');
