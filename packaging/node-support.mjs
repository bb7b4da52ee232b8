// Whether the Node.js that `make sea` copies into the binary still gets
// security fixes. The packaged daemon runs as root and parses every mount
// target's certificate with that Node's OpenSSL, so a release built on a line
// past its end of life ships its unfixed flaws to every host.

/** End of life of each Node.js LTS line (nodejs.org/en/about/previous-releases). A line not listed is newer, or odd. */
const LTS_END_OF_LIFE = { 16: '2023-09-11', 18: '2025-04-30', 20: '2026-04-30', 22: '2027-04-30', 24: '2028-04-30' };

/**
 * A warning for a build on `version` (as process.version) on `today` (YYYY-MM-DD), or null when that line is a
 * supported LTS. `lts` is process.release.lts: a codename on LTS lines, undefined on the others.
 */
export function nodeSupportWarning(version, lts, openssl, today) {
  const major = Number(/^v(\d+)\./.exec(version)?.[1]);
  const eol = LTS_END_OF_LIFE[major];
  const carries = `the binary carries Node.js ${version} (OpenSSL ${openssl})`;
  if (eol !== undefined && today > eol) {
    return `${carries}, whose line reached its end of life on ${eol} and gets no security fixes; build releases with a Node.js LTS that is still supported`;
  }
  if (eol === undefined && !lts) {
    return `${carries}, which is not a long-term-support line and gets fixes only until the next one; build releases with a Node.js LTS`;
  }
  return null;
}
