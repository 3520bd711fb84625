declare module 'proxy-from-env' {
  /** Returns the proxy URL for `url` following HTTP(S)_PROXY/NO_PROXY, or '' to go direct. */
  export function getProxyForUrl(url: string | URL): string;
}
