import { PACKAGE_VERSION } from '../util/version.js';

/** The version an agent reports to the proxy (the package version). */
export const AGENT_VERSION: string = PACKAGE_VERSION;
