/// What the normalisation ops share outside their kernels: the differentiable formulas
/// their backward passes use while a graph is being built (second order: WGAN-GP, R1),
/// and the bookkeeping of their optional affine inputs.

/// The differentiable pieces of a normalisation, on a view `v` of the input whose axes of
/// extent 1 in `statShape` are the ones reduced over.
enum NormComposite {
    /// x̂ = (v − mean)/std and std = √(var + eps), statistics over the reduced axes.
    static func normalize(_ v: Tensor, statShape: [Int], eps: Float) -> (xhat: Tensor, std: Tensor) {
        let inv = 1 / Float(v.count / max(1, statShape.reduce(1, *)))
        let centred = v - v.summed(to: statShape) * inv
        let std = ((centred * centred).summed(to: statShape) * inv + eps).sqrt()
        return (centred / std, std)
    }

    /// Gradients of y = x̂·w + b given dL/dy = `gz` (same shape as `xhat`): dx through the
    /// statistics (means over the reduced axes), dw and db summed to `affineShape`.
    /// `weight` is already shaped to broadcast against `xhat`.
    static func backward(gz: Tensor, xhat: Tensor, std: Tensor, weight: Tensor?, statShape: [Int],
                         affineShape: [Int], throughStatistics: Bool,
                         needX: Bool, needW: Bool, needB: Bool) -> (dx: Tensor?, dw: Tensor?, db: Tensor?) {
        let dw = needW ? (gz * xhat).summed(to: affineShape) : nil
        let db = needB ? gz.summed(to: affineShape) : nil
        guard needX else { return (nil, dw, db) }
        let dxhat = weight.map { gz * $0 } ?? gz
        guard throughStatistics else { return (dxhat / std, dw, db) }
        let inv = 1 / Float(xhat.count / max(1, statShape.reduce(1, *)))
        let meanDxhat = dxhat.summed(to: statShape) * inv
        let meanDxhatXhat = (dxhat * xhat).summed(to: statShape) * inv
        return ((dxhat - meanDxhat - xhat * meanDxhatXhat) / std, dw, db)
    }
}

/// Where weight and bias sit in an op's input list (they are optional).
struct AffineInputs {
    let inputs: [Tensor]
    let weightIndex: Int?
    let biasIndex: Int?

    init(_ x: Tensor, _ weight: Tensor?, _ bias: Tensor?) {
        var inputs = [x]
        var wi: Int?, bi: Int?
        if let weight { wi = inputs.count; inputs.append(weight) }
        if let bias { bi = inputs.count; inputs.append(bias) }
        self.inputs = inputs
        weightIndex = wi
        biasIndex = bi
    }

    func needW(_ needs: [Bool]) -> Bool { weightIndex.map { needs[$0] } ?? false }
    func needB(_ needs: [Bool]) -> Bool { biasIndex.map { needs[$0] } ?? false }

    /// The backward result in input order, each gradient in its input's shape.
    func gradients(dx: Tensor?, dw: Tensor?, db: Tensor?) -> [Tensor?] {
        var out: [Tensor?] = [dx.map { shaped($0, like: inputs[0]) }]
        if let weightIndex { out.append(dw.map { shaped($0, like: inputs[weightIndex]) }) }
        if let biasIndex { out.append(db.map { shaped($0, like: inputs[biasIndex]) }) }
        return out
    }

    private func shaped(_ t: Tensor, like input: Tensor) -> Tensor {
        t.shape == input.shape ? t : t.reshaped(input.shape)
    }
}

/// Checks that an affine parameter is a vector of `channels` values.
func checkAffine(_ t: Tensor?, channels: Int, _ what: String, _ op: String) {
    if let t {
        precondition(t.count == channels, "\(op): \(what) has shape \(t.shape), expected [\(channels)]")
    }
}
