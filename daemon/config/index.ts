// farmemd's configuration: the TOML file format, its validation and its documentation.
export { loadConfig, ConfigError, type DaemonConfig, type MemoryServerConfig, type TlsConfig, type FlagValue, type LoadOptions } from './load';
export { KEYS, renderKeysTable, LOG_LEVELS, type LogLevel } from './schema';
