// The release version. The bundler replaces __EFS_RELAY_VERSION__ with the
// version in package.json; unbundled (unit tests) it reads "dev".
declare const __EFS_RELAY_VERSION__: string | undefined;

export const VERSION: string = typeof __EFS_RELAY_VERSION__ === 'string' ? __EFS_RELAY_VERSION__ : 'dev';
