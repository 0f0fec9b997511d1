// Metro for the app: also watch the SDK (a `file:` dependency, linked into
// node_modules) so its dist/ can be bundled, and resolve packages from the
// app's own node_modules when the SDK folder has none.
const path = require("path");
const { getDefaultConfig } = require("expo/metro-config");

const config = getDefaultConfig(__dirname);
const sdk = path.resolve(__dirname, "../../clients/typescript");
config.watchFolders = [...(config.watchFolders ?? []), sdk];
config.resolver.nodeModulesPaths = [path.resolve(__dirname, "node_modules")];
module.exports = config;
