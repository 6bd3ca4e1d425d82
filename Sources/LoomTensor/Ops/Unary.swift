/// Core elementwise functions (exp, log, sqrt, sigmoid, tanh, SiLU) and the SIMD map
/// helpers that every elementwise op uses. Backward passes use a fused SIMD kernel when
/// the tape is off, and differentiable composite formulas when building a graph.

/// out = f(x) lane-wise over SIMD16 blocks, split across threads for large tensors.
@inline(__always)
public func mapSIMD(_ x: Tensor, _ f: (Float16x) -> Float16x) -> Tensor {
    let out = Tensor(uninitialized: x.shape)
    let px = x.data, po = out.data
    Parallel.forRange(x.count, grain: 1 << 14) { r in
        simdMap(px + r.lowerBound, po + r.lowerBound, r.count, f)
    }
    return out
}

/// out = f(a, b) lane-wise for two tensors of the same shape (fused backward kernels).
@inline(__always)
public func mapSIMD(_ a: Tensor, _ b: Tensor, _ f: (Float16x, Float16x) -> Float16x) -> Tensor {
    precondition(a.shape == b.shape, "mapSIMD: shapes \(a.shape) and \(b.shape) differ")
    let out = Tensor(uninitialized: a.shape)
    let pa = a.data, pb = b.data, po = out.data
    Parallel.forRange(a.count, grain: 1 << 14) { r in
        var i = r.lowerBound
        while i + 16 <= r.upperBound {
            let va = UnsafeRawPointer(pa + i).loadUnaligned(as: Float16x.self)
            let vb = UnsafeRawPointer(pb + i).loadUnaligned(as: Float16x.self)
            UnsafeMutableRawPointer(po + i).storeBytes(of: f(va, vb), as: Float16x.self)
            i += 16
        }
        if i < r.upperBound {
            var va = Float16x(repeating: 0), vb = Float16x(repeating: 0)
            for k in 0..<(r.upperBound - i) { va[k] = pa[i + k]; vb[k] = pb[i + k] }
            let v = f(va, vb)
            for k in 0..<(r.upperBound - i) { po[i + k] = v[k] }
        }
    }
    return out
}

extension Tensor {
    /// e^x.
    public func exp() -> Tensor {
        let out = mapSIMD(self, simdExp)
        let y = out.detached()  // the saved output, off the tape (no reference cycle)
        return out.recorded("exp", [self]) { g, _ in [g * (GradMode.isEnabled ? self.exp() : y)] }
    }

    /// Natural logarithm.
    public func log() -> Tensor {
        let out = Tensor(uninitialized: shape)
        let px = data, po = out.data
        Parallel.forRange(count, grain: 1 << 13) { r in for i in r { po[i] = Foundation.log(px[i]) } }
        return out.recorded("log", [self]) { g, _ in [g / self] }
    }

    /// Square root.
    public func sqrt() -> Tensor {
        let out = mapSIMD(self) { $0.squareRoot() }
        let y = out.detached()
        return out.recorded("sqrt", [self]) { g, _ in
            [GradMode.isEnabled ? g / (self.sqrt() * 2) : mapSIMD(g, y) { g, y in g / (2 * y) }]
        }
    }

    /// Logistic sigmoid 1 / (1 + e^-x).
    public func sigmoid() -> Tensor {
        let out = mapSIMD(self, simdSigmoid)
        let y = out.detached()
        return out.recorded("sigmoid", [self]) { g, _ in
            if GradMode.isEnabled { let s = self.sigmoid(); return [g * s * (1 - s)] }
            return [mapSIMD(g, y) { g, s in g * s * (1 - s) }]
        }
    }

    /// Hyperbolic tangent.
    public func tanh() -> Tensor {
        let out = mapSIMD(self, simdTanh)
        let y = out.detached()
        return out.recorded("tanh", [self]) { g, _ in
            if GradMode.isEnabled { let t = self.tanh(); return [g * (1 - t * t)] }
            return [mapSIMD(g, y) { g, t in g * (1 - t * t) }]
        }
    }

    /// SiLU (swish): x · σ(x).
    public func silu() -> Tensor {
        let out = mapSIMD(self) { $0 * simdSigmoid($0) }
        return out.recorded("silu", [self]) { g, _ in
            if GradMode.isEnabled {
                let s = self.sigmoid()
                return [g * (s * (1 + self * (1 - s)))]
            }
            return [mapSIMD(g, self) { g, x in
                let s = simdSigmoid(x)
                return g * s * (1 + x * (1 - s))
            }]
        }
    }
}

import Foundation
