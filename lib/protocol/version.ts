/** Wire protocol version: the URL prefix `/v1` and the `version` field agents send. */
export const PROTOCOL_VERSION = 1;
export const API_PREFIX = '/v1';
