"""User tasks that are wrong in one way each (and one that is right), for tests/test_user_tasks.py."""
import numpy as np

from plantnseek.core.tasks import Task


class Good(Task):
    """|x| + 0.5: relu(x) + relu(-x), identities, + 0.5; 2 + 2 (depth - 3) + 2 weights, one bias."""

    d_in, d_out, classification = 1, 1, False

    def sample(self, rng, n, noise):
        x = rng.uniform(-1, 1, size=(n, 1))
        return x, np.abs(x) + 0.5 + rng.normal(0, noise, size=(n, 1))

    def ticket(self, depth):
        middle = [(np.eye(2), np.zeros(2)) for _ in range(depth - 3)]
        return [(np.array([[1.0], [-1.0]]), np.zeros(2)), *middle, (np.ones((1, 2)), np.array([0.5]))]


def not_a_class():
    return Good()


class NeedsArgs(Good):
    def __init__(self, size):
        self.size = size


class NoTicket:
    d_in, d_out, classification = 1, 1, False

    def sample(self, rng, n, noise):
        return np.zeros((n, 1)), np.zeros((n, 1))


class DInText(Good):
    d_in = "1"


class ClassificationNumber(Good):
    classification = 1


class OneClass(Good):
    classification = True


class NegativeMaxNoise(Good):
    max_noise = -1.0


class SampleRaises(Good):
    def sample(self, rng, n, noise):
        raise RuntimeError("no data today")


class SampleOneArray(Good):
    def sample(self, rng, n, noise):
        return np.zeros((n, 1))


class SampleWideInputs(Good):
    def sample(self, rng, n, noise):
        return np.zeros((n, 3)), np.zeros((n, 1))


class SampleFlatTargets(Good):
    def sample(self, rng, n, noise):
        return np.zeros((n, 1)), np.zeros(n)


class SampleNaN(Good):
    def sample(self, rng, n, noise):
        x, y = super().sample(rng, n, noise)
        y[0, 0] = np.nan
        return x, y


class TwoClasses(Task):
    d_in, d_out, classification = 1, 2, True

    def sample(self, rng, n, noise):
        x = rng.uniform(-1, 1, size=(n, 1))
        return x, (x[:, 0] > 0).astype(np.int64)

    def ticket(self, depth):
        middle = [(np.eye(2), np.zeros(2)) for _ in range(depth - 3)]
        return [(np.array([[-1.0], [1.0]]), np.zeros(2)), *middle, (np.eye(2), np.zeros(2))]


class FloatLabels(TwoClasses):
    def sample(self, rng, n, noise):
        x, y = super().sample(rng, n, noise)
        return x, y.astype(float)


class LabelOutOfRange(TwoClasses):
    def sample(self, rng, n, noise):
        x, y = super().sample(rng, n, noise)
        return x, y + 1


class TicketTooShallow(Good):
    def ticket(self, depth):
        return super().ticket(depth)[1:]


class TicketWrongInput(Good):
    def ticket(self, depth):
        layers = super().ticket(depth)
        layers[0] = (np.ones((2, 3)), np.zeros(2))
        return layers


class TicketWrongOutput(Good):
    def ticket(self, depth):
        layers = super().ticket(depth)
        layers[-1] = (np.ones((3, 2)), np.zeros(3))
        return layers


class TicketWrongBias(Good):
    def ticket(self, depth):
        layers = super().ticket(depth)
        layers[0] = (layers[0][0], np.zeros(5))
        return layers


class TicketInf(Good):
    def ticket(self, depth):
        layers = super().ticket(depth)
        layers[-1] = (np.array([[1.0, np.inf]]), np.zeros(1))
        return layers


class TicketEmptyLayer(Good):
    def ticket(self, depth):
        layers = super().ticket(depth)
        layers[0] = (np.zeros((2, 1)), np.zeros(2))
        return layers


class TicketRaises(Good):
    def ticket(self, depth):
        raise ValueError("only depth 9 is supported")
