import Foundation

/// What a latent sample holds (`loom encode --mode`).
public enum LatentMode: String, Codable, CaseIterable, Sendable {
    /// The posterior mean μ and standard deviation σ, channels `[μ_0 … μ_{c-1}, σ_0 … σ_{c-1}]`:
    /// training draws z = μ + σ·ε every step, as latent diffusion does.
    case meanStd = "mean_std"
    /// The posterior mean only: training uses z = μ.
    case mean

    /// Stored channels per latent channel.
    public var factor: Int { self == .meanStd ? 2 : 1 }
}

/// `index.json`'s `latents` object: how a latent data set was made (`loom encode`), so that a
/// diffusion run can check it against its first stage and scale the latents.
public struct LatentRecord: Codable, Equatable, Sendable {
    /// Mean and std, or the mean only.
    public var mode: LatentMode
    /// `[h, w, c]` of one latent (the denoiser's input).
    public var latentShape: [Int]
    /// `[H, W, C]` of the images that were encoded.
    public var imageShape: [Int]
    /// 1 / `std`: multiplies the latents so that they have unit variance (latent diffusion's
    /// `scale_by_std`).
    public var scaleFactor: Double
    /// The standard deviation of z over `scaleSplit`, every element of every sample pooled:
    /// √(mean(μ² + σ²) − mean(μ)²) for `mean_std` (z = μ + σ·ε, in expectation over ε),
    /// √(mean(μ²) − mean(μ)²) for `mean`.
    public var std: Double
    /// The split the scale was measured on (`train` when encoded).
    public var scaleSplit: String
    /// The autoencoder checkpoint file that encoded the set, as it was given (resolved to a file).
    public var autoencoder: String
    /// XXH64 of the autoencoder's weights (`xxh64:…`, the checkpoint group's `checksum`).
    public var autoencoderChecksum: String
    /// The image data set that was encoded.
    public var images: String

    enum CodingKeys: String, CodingKey {
        case mode, latentShape = "latent_shape", imageShape = "image_shape", scaleFactor = "scale_factor", std
        case scaleSplit = "scale_split", autoencoder, autoencoderChecksum = "autoencoder_checksum", images
    }

    /// Public memberwise initialiser.
    public init(mode: LatentMode, latentShape: [Int], imageShape: [Int], scaleFactor: Double, std: Double,
                scaleSplit: String, autoencoder: String, autoencoderChecksum: String, images: String) {
        self.mode = mode
        self.latentShape = latentShape
        self.imageShape = imageShape
        self.scaleFactor = scaleFactor
        self.std = std
        self.scaleSplit = scaleSplit
        self.autoencoder = autoencoder
        self.autoencoderChecksum = autoencoderChecksum
        self.images = images
    }

    /// The stored sample shape: `[h, w, c]` (mean) or `[h, w, 2c]` (mean and std).
    public var storedShape: [Int] { [latentShape[0], latentShape[1], latentShape[2] * mode.factor] }

    /// Checks the record against its index (`path` is `index.json`).
    func check(index: DatasetIndex, path: String) throws {
        guard index.kind == .latents else {
            throw StorageError.schema(path: path, key: "latents", expected: "absent in a data set of kind \(index.kind.rawValue)", found: "present")
        }
        for (key, shape) in [("latents.latent_shape", latentShape), ("latents.image_shape", imageShape)]
            where shape.count != 3 || !shape.allSatisfy({ $0 > 0 }) {
            throw StorageError.schema(path: path, key: key, expected: "[H, W, C] with positive extents", found: "\(shape)")
        }
        guard index.sampleShape == storedShape else {
            throw StorageError.schema(path: path, key: "sample_shape", expected: "\(storedShape) (latents.latent_shape \(latentShape), mode \(mode.rawValue))",
                                      found: "\(index.sampleShape)")
        }
        guard scaleFactor.isFinite, scaleFactor > 0 else {
            throw StorageError.schema(path: path, key: "latents.scale_factor", expected: "a finite number above 0", found: "\(scaleFactor)")
        }
    }
}
