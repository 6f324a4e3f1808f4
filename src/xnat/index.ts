// Public surface of the XNAT client layer.
export * from './types.js';
export { createXnatClient, normalizeBaseUrl, XnatClient, type XnatClientOptions } from './client.js';
export {
  resolveCredentials,
  describeCredentials,
  parseNetrc,
  findNetrcEntry,
  readNetrc,
  netrcPath,
  type CredentialOptions,
  type CredentialSource,
  type NetrcEntry,
  type ResolvedCredentials,
} from './credentials.js';
export { extractHtmlMessage, extractBodyMessage } from './errors.js';
export { USER_AGENT, type RetryOptions, type Timeouts } from './http.js';
export {
  encodeSegment,
  encodeFilePath,
  encodeFilePathForWrite,
  ownerPath,
  resourcePath,
  filesPath,
  relativePathFromUri,
  scanIdFromUri,
  requestPathFromUri,
} from './paths.js';
export { parseResultSet } from './resultset.js';
