// Following a symbolic link one hop at a time, as the kernel does, but
// keeping every hop: the file watch must watch where the chain ends even
// while that file is missing, and the trust check must judge the directory of
// every link along the way (whoever can write one can make the chain lead
// elsewhere).
import { lstat, readlink } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/** Links followed before a chain is taken for a loop (the kernel's own limit, ELOOP). */
const MAX_HOPS = 40;

/**
 * `file` and, while it is a link, each path a link leads to, in order: the last is where the chain ends, whether
 * or not it is there now. A loop ends at the path it had reached. `[file]` alone when `file` is no link.
 */
export async function linkHops(file: string): Promise<string[]> {
  const hops = [resolve(file)];
  for (let hop = 0; hop < MAX_HOPS; hop++) {
    const path = hops[hops.length - 1]!;
    const isLink = await lstat(path).then((st) => st.isSymbolicLink(), () => false);
    if (!isLink) break;
    const text = await readlink(path).catch(() => null);
    if (text === null) break;
    hops.push(resolve(dirname(path), text));
  }
  return hops;
}
