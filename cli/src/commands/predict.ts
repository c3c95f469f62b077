// fedsam predict: one object in one image from a box (and optional points).
import { Option, type Command } from 'commander';
import { resolve } from 'node:path';
import { predict } from '@fedsam/client/local/predict';
import { parseBoxCropArg, parseNumberList, parsePoint } from '../args.ts';
import { BOX_CROP_HELP } from '@fedsam/shared/boxCrop';
import { MODEL_HELP, print } from '../options.ts';

export function registerPredictCommand(program: Command): Command {
  return program.command('predict')
    .description('segment one object in one image from a box (and optional points); writes the mask and an overlay')
    .addOption(new Option('--model <dir>', MODEL_HELP))
    .addOption(new Option('--image <file>', 'PNG, JPEG or TIFF image').makeOptionMandatory())
    .addOption(new Option('--box <x0,y0,x1,y1>', 'box around the object in image pixels').argParser(parseNumberList('--box', 4)).makeOptionMandatory())
    .addOption(new Option('--point <x,y,label>', 'extra point prompt (label 1 foreground, 0 background); repeatable').argParser(parsePoint))
    .addOption(new Option('--out <mask.png>', 'binary mask (0/255) at the image size').makeOptionMandatory())
    .addOption(new Option('--overlay <overlay.png>', 'picture of the mask (blue) and the prompt box (yellow) drawn over the image'))
    .addOption(new Option('--multimask', 'predict 3 masks and keep the one with the highest predicted IoU'))
    .addOption(new Option('--box-crop <n|off>', BOX_CROP_HELP).argParser(parseBoxCropArg('--box-crop')))
    .action(async (o) => {
      const r = await predict(o);
      print(`mask: ${resolve(o.out)} (${r.width}x${r.height}, ${r.pixels} foreground pixels)`);
      if (o.overlay) print(`overlay: ${resolve(o.overlay)}`);
      if (r.crop) print(`segmented in the box crop x ${r.crop.x}..${r.crop.x + r.crop.width - 1}, y ${r.crop.y}..${r.crop.y + r.crop.height - 1} (--box-crop off: the whole image)`);
      print(`predicted IoU: ${r.iou.toFixed(4)}`);
    });
}
