import Foundation
import LoomTensor
import LoomTraining
import Testing

@Suite struct ConfigTests {
    func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("loom-config-\(UUID().uuidString).yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func defaultsAreW1() throws {
        let c = try RunConfig.load(file: nil)
        #expect(c.model.baseChannels == 32 && c.model.channelMultipliers == [1, 2, 2] && c.model.heads == 4)
        #expect(c.optimizer.lr == 2e-4 && c.ema.decay == 0.9999 && c.train.batchSize == 64)
    }

    @Test func fileThenOverrides() throws {
        let path = try write("""
            seed: 7
            model:
              base_channels: 64
              channel_mult: [1, 2]
            optimizer: {lr: 1e-3}
            """)
        let c = try RunConfig.load(file: path, overrides: ["optimizer.lr=1e-4", "train.max_steps=500", "data.path=/tmp/x"])
        #expect(c.seed == 7 && c.model.baseChannels == 64 && c.model.channelMultipliers == [1, 2])
        #expect(c.optimizer.lr == 1e-4 && c.train.maxSteps == 500 && c.data.path == "/tmp/x")
        #expect(c.resolvedYAML.contains("max_steps: 500"))
        // The resolved YAML reads back to the same config.
        let again = try RunConfig.load(file: try write(c.resolvedYAML))
        #expect(again.model == c.model && again.optimizer.lr == c.optimizer.lr && again.train.maxSteps == 500)
    }

    @Test func unknownKeyNamesPathAndSuggests() throws {
        let path = try write("optimizer:\n  lrr: 0.1\n")
        #expect(throws: ConfigError.unknownKey(file: path, path: "optimizer.lrr", suggestion: "optimizer.lr")) {
            try RunConfig.load(file: path)
        }
        #expect(throws: ConfigError.unknownKey(file: "(defaults)", path: "train.batchsize", suggestion: "train.batch_size")) {
            try RunConfig.load(file: nil, overrides: ["train.batchsize=3"])
        }
        #expect(throws: ConfigError.unknownKey(file: "(defaults)", path: "sead", suggestion: "seed")) {
            try RunConfig.load(file: nil, overrides: ["sead=3"])
        }
    }

    @Test func wrongTypesAndValues() throws {
        let path = try write("train:\n  batch_size: many\n")
        #expect(throws: ConfigError.wrongType(file: path, path: "train.batch_size", expected: "an integer", found: "'many'")) {
            try RunConfig.load(file: path)
        }
        #expect(throws: ConfigError.invalidValue(file: "(defaults)", path: "diffusion.schedule",
                                                 reason: "must be one of linear, cosine, found 'cosin'; did you mean 'cosine'?")) {
            try RunConfig.load(file: nil, overrides: ["diffusion.schedule=cosin"])
        }
        #expect(throws: ConfigError.wrongType(file: "(defaults)", path: "model", expected: "a mapping of keys", found: "'3'")) {
            try RunConfig.load(file: nil, overrides: ["model=3"])
        }
        #expect(throws: ConfigError.invalidValue(file: "(defaults)", path: "conv_algorithm",
                                                 reason: "must be one of auto, direct, found 'winograd'")) {
            try RunConfig.load(file: nil, overrides: ["conv_algorithm=winograd"])
        }
        #expect(try RunConfig.load(file: nil, overrides: ["conv_algorithm=direct"]).convAlgorithm == .direct)
        #expect(try RunConfig.load(file: nil).convAlgorithm == .auto)
        #expect(throws: ConfigError.badOverride("lr")) { try RunConfig.load(file: nil, overrides: ["lr"]) }
        let messages = [ConfigError.unknownKey(file: "a.yaml", path: "x.y", suggestion: "x.z").description]
        #expect(messages == ["a.yaml: unknown key 'x.y'; did you mean 'x.z'?"])
    }

    @Test func missingFileIsAClearError() {
        #expect(throws: ConfigError.unreadable(file: "/nonexistent/cfg.yaml", reason: "no such file")) {
            try RunConfig.load(file: "/nonexistent/cfg.yaml")
        }
    }
}
