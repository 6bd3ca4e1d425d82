import Foundation
import LoomStorage
import Testing

/// Distributed sampling (the same file for 1 and 2 ranks, every family), the metrics during
/// training, and TensorBoard's own reader on the event files.
@Suite(.serialized) struct SampleQualityTrainingTests {
    /// `/samples` and `/labels` bytes and every root attribute but the checkpoint path.
    static func content(_ path: String) throws -> (samples: [Float], labels: [Int64]?, attributes: [String: String]) {
        let f = try H5File.open(path)
        defer { f.close() }
        let samples: [Float] = try f.root.read("samples")
        let labels: [Int64]? = f.root.contains("labels") ? try f.root.read("labels") : nil
        var attributes: [String: String] = [:]
        for name in try f.root.attributeNames() {
            if let s = try? f.root.stringAttribute(name) { attributes[name] = s }
            else if let i = try? f.root.intAttribute(name) { attributes[name] = String(i) }
            else if let d = try? f.root.doubleAttribute(name) { attributes[name] = String(d) }
        }
        return (samples, labels, attributes)
    }

    /// Trains `steps` steps of a tiny model of each family and samples it with 1 and 2 ranks:
    /// the samples (bit for bit), labels and attributes agree, and differ from another seed.
    @Test(arguments: ["unet", "dcgan", "mlp_vae"]) func distributedSamplingGivesTheSameFileForOneAndTwoRanks(_ family: String) throws {
        let (config, overrides, folder): (String, [String], String)
        switch family {
        case "unet":
            folder = try TrainingTests.stripes(count: 64, size: 8)
            (config, overrides) = (TrainingTests.configs + "/ddpm-fashion.yaml", TrainingTests.tiny(folder, steps: 2))
        case "dcgan":
            folder = try TrainingTests.stripes(count: 64, size: 28)
            (config, overrides) = (GANTrainingTests.config, GANTrainingTests.tiny(folder, steps: 2, extra: ["model.num_classes=2"]))
        default:
            folder = try TrainingTests.stripes(count: 64, size: 28)
            (config, overrides) = (TrainingTests.configs + "/vae-fashion.yaml",
                                   ["data.path=\(folder)/data", "train.batch_size=8", "train.max_steps=2", "sample.every=0", "vae.held_out=8"])
        }
        let run = folder + "/run-\(family)"
        let t = try LoomBinary.loom(["worker", config] + overrides + ["--run-dir", run])
        #expect(t.status == 0, "\(t.stderr)")
        // DDPM draws fresh noise at every step: the per-image streams matter beyond x_T.
        let options = ["--n", "11", "--batch", "3"] + (family == "unet" ? ["--sampler", "ddpm", "--steps", "4"] : [])
        let one = try LoomBinary.loom(["sample", run, "--raw", folder + "/one.h5", "--quiet"] + options)
        #expect(one.status == 0, "\(one.stderr)")
        let two = try LoomBinary.mpirun(ranks: 2, ["sample", run, folder + "/two.png", "--raw", folder + "/two.h5"] + options)
        #expect(two.status == 0, "\(two.stderr)")
        // Rank 0's progress line: the first chunk of each rank done, then the end.
        #expect(two.stderr.contains("sample: 6/11 images (54%)") && two.stderr.contains("sample: 11/11 images (100%)"), "\(two.stderr)")
        let a = try Self.content(folder + "/one.h5"), b = try Self.content(folder + "/two.h5")
        #expect(a.samples.count == 11 * (family == "unet" ? 64 : 784))
        #expect(a.samples.map(\.bitPattern) == b.samples.map(\.bitPattern), "1 and 2 ranks differ")
        #expect(a.labels == b.labels && a.attributes == b.attributes, "\(a.attributes) vs \(b.attributes)")
        if family == "mlp_vae" { #expect(a.labels == nil) } else { #expect(a.labels == (0..<11).map { Int64($0 % 2) }) }
        #expect(a.attributes["model_type"] == family && a.attributes["count"] == "11" && a.attributes["step"] == "2")
        if family == "unet" { #expect(a.attributes["sampler"] == "ddpm" && a.attributes["steps"] == "4", "\(a.attributes)") }
        // Image i does not depend on the batch it was computed in: the first 3 of a 3-image run.
        let three = try LoomBinary.loom(["sample", run, "--raw", folder + "/three.h5", "--quiet", "--n", "3", "--batch", "3"]
                                        + options.dropFirst(4))
        #expect(three.status == 0, "\(three.stderr)")
        #expect(try Self.content(folder + "/three.h5").samples.map(\.bitPattern) == Array(a.samples.prefix(a.samples.count / 11 * 3)).map(\.bitPattern))
        let other = try LoomBinary.loom(["sample", run, "--raw", folder + "/other.h5", "--quiet", "--seed", "1"] + options)
        let otherSamples = try Self.content(folder + "/other.h5").samples
        #expect(other.status == 0 && otherSamples != a.samples)
    }

    /// A python with the `tensorboard` package: a venv under .build, created and filled from
    /// PyPI the first time (about 15 s), reused after.
    static func tensorboardPython() throws -> String {
        let root = URL(fileURLWithPath: TrainingTests.configs).deletingLastPathComponent().path
        let venv = root + "/.build/tensorboard-venv", python = venv + "/bin/python"
        if FileManager.default.isExecutableFile(atPath: python), try LoomBinary.run(python, ["-c", "import tensorboard"]).status == 0 {
            return python
        }
        let make = try LoomBinary.run("/usr/bin/python3", ["-m", "venv", venv])
        guard make.status == 0 else { throw CocoaError(.executableLoad, userInfo: ["venv": make.stderr]) }
        let install = try LoomBinary.run(venv + "/bin/pip", ["install", "--quiet", "tensorboard"], timeout: 600)
        guard install.status == 0 else { throw CocoaError(.executableLoad, userInfo: ["pip install tensorboard": install.stderr]) }
        return python
    }

    /// 2 ranks train a tiny conditional U-Net with `eval.every`: the metrics join the log lines
    /// of metrics.jsonl and the terminal; TensorBoard's event reader finds every scalar of
    /// metrics.jsonl at its step with its value, and the sample grids as PNG images.
    @Test func metricsDuringTrainingAndTensorBoardEvents() throws {
        let folder = try EvalCLITests.stripesWithVal()
        let classifier = try EvalCLITests.classifier(folder)
        let run = folder + "/ddpm"
        let r = try LoomBinary.mpirun(ranks: 2, ["worker", TrainingTests.configs + "/ddpm-fashion.yaml"]
                                      + TrainingTests.tiny(folder, steps: 4, extra: [
                                        "logging.every=2", "eval.every=2", "eval.n=24", "eval.batch=5", "eval.features=\(classifier)",
                                        "eval.reference_n=200", "sample.every=4", "sample.n=4"]) + ["--run-dir", run])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("eval step 2: FD ") && r.stdout.contains("eval step 4: FD "), "\(r.stdout)")
        let lines = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.count == 2)
        for line in lines {
            for key in ["fd", "kid", "kid_std", "precision", "recall", "density", "coverage", "is", "accuracy"] {
                #expect(((line[key] as? Double) ?? -1) >= 0, "\(key) in \(line)")
            }
        }

        let python = try Self.tensorboardPython()
        let read = try LoomBinary.run(python, ["-c", """
            import json, sys
            from tensorboard.backend.event_processing import event_accumulator
            acc = event_accumulator.EventAccumulator('\(run)/tensorboard', size_guidance={'scalars': 0, 'images': 0})
            acc.Reload()
            tags = acc.Tags()
            out = {'scalars': {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags['scalars']},
                   'images': {t: [[e.step, e.width, e.height, len(e.encoded_image_string), e.encoded_image_string[:8].hex()] for e in acc.Images(t)] for t in tags['images']}}
            print(json.dumps(out))
            """])
        #expect(read.status == 0, "\(read.stderr)")
        let events = try #require(try JSONSerialization.jsonObject(with: Data(read.stdout.utf8)) as? [String: [String: [[Any]]]])
        let scalars = events["scalars"] ?? [:]
        for line in lines {
            let step = line["step"] as? Int ?? -1
            for (key, value) in line where key != "step" {
                guard let v = value as? Double ?? (value as? Int).map(Double.init) else { continue }
                let found = scalars[key]?.first { ($0[0] as? Int) == step }
                let logged = found.flatMap { $0[1] as? Double }
                #expect(logged.map { abs($0 - Double(Float(v))) <= 1e-6 * max(1, abs(v)) } == true, "\(key) at step \(step): \(String(describing: logged)) vs \(v)")
            }
        }
        let grid = try PNG.read(path: run + "/samples/step-00000004.png")
        let images = events["images"]?["samples"] ?? []
        #expect(images.count == 1, "\(events["images"] ?? [:])")
        if let image = images.first {
            #expect(image[0] as? Int == 4 && image[1] as? Int == grid.width && image[2] as? Int == grid.height)
            #expect(image[4] as? String == "89504e470d0a1a0a", "a PNG signature")
        }
    }
}
